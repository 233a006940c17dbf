"""The event contract: valid messages parse, every class of bad input is rejected with a reason."""

from __future__ import annotations

import contextlib
import json
from unittest import mock

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import settings
from engine.sources import events
from engine.sources.encoding import ENCODINGS, encode_event
from engine.sources.events import Interaction, InvalidEvent, parse_event, preview


def _msg(**fields) -> bytes:
    return json.dumps(fields).encode()


def test_valid_event_keeps_ids_as_strings():
    event = parse_event(_msg(user=42, item="tt0111", rating=4.5, timestamp=1_700_000_000))
    assert event == Interaction(user="42", item="tt0111", rating=4.5, timestamp=1_700_000_000.0)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe garbage", "not UTF-8"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'"just a string"', "not a JSON object"),
        (_msg(item="i", rating=5, timestamp=1), "missing field 'user'"),
        (_msg(user="u", rating=5, timestamp=1), "missing field 'item'"),
        (_msg(user="u", item="i", timestamp=1), "missing field 'rating'"),
        (_msg(user="u", item="i", rating=5), "missing field 'timestamp'"),
        (_msg(user="", item="i", rating=5, timestamp=1), "'user' is empty"),
        (_msg(user="   ", item="i", rating=5, timestamp=1), "'user' is empty"),
        (_msg(user="u" * 300, item="i", rating=5, timestamp=1), "longer than"),
        (_msg(user=1.5, item="i", rating=5, timestamp=1), "string or an integer"),
        (_msg(user=True, item="i", rating=5, timestamp=1), "string or an integer"),
        (_msg(user=None, item="i", rating=5, timestamp=1), "string or an integer"),
        (_msg(user="u\n", item="i\x00", rating=5, timestamp=1), "control characters"),
        (_msg(user="u", item="i", rating="5", timestamp=1), "'rating' must be a number"),
        (_msg(user="u", item="i", rating=5, timestamp="yesterday"), "must be a number"),
        (b'{"user": "u", "item": "i", "rating": NaN, "timestamp": 1}', "non-finite"),
        (b'{"user": "u", "item": "i", "rating": Infinity, "timestamp": 1}', "non-finite"),
        (_msg(user="u", item="i", rating=1e300, timestamp=1), "'rating' is out of range"),
        (b'{"user": "u", "item": "i", "rating": 1e999, "timestamp": 1}', "not finite"),
        (_msg(user="u", item="i", rating=5, timestamp=-5), "'timestamp' is out of range"),
        (_msg(user="u", item="i", rating=5, timestamp=1e15), "'timestamp' is out of range"),
        (b'{"user": "u", "user": "v", "item": "i", "rating": 5, "timestamp": 1}', "duplicate key"),
        (b"[" * 20_000 + b"]" * 20_000, "nested too deeply"),
        (b"", "not valid JSON"),
        (b'{"user": "\\ud800", "item": "i", "rating": 5, "timestamp": 1}', "control characters"),
    ],
)
def test_bad_input_is_rejected_with_its_reason(raw, reason):
    with pytest.raises(InvalidEvent, match=reason.replace("(", r"\(").replace("'", "'")):
        parse_event(raw)


def test_oversized_payload_is_rejected_before_decoding():
    raw = _msg(user="u", item="i", rating=5, timestamp=1, pad="x" * 100_000)
    with pytest.raises(InvalidEvent, match="payload too large"):
        parse_event(raw, max_bytes=64 * 1024)


def test_preview_truncates_long_payloads_and_keeps_them_printable():
    text = preview(b"\xff" + b"a" * 10_000)
    assert len(text) < 600
    assert text.endswith("(10001 bytes)")
    assert "\ufffd" in text


@given(st.binary(max_size=300))
def test_parser_never_raises_anything_but_invalid_event_on_random_bytes(raw):
    with contextlib.suppress(InvalidEvent):
        parse_event(raw)


_ids = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Zs")),
        min_size=1,
        max_size=50,
    ),
)


@given(
    user=_ids,
    item=_ids,
    rating=st.floats(min_value=-5, max_value=5, allow_nan=False),
    timestamp=st.integers(min_value=0, max_value=4_000_000_000),
)
def test_any_valid_event_round_trips(user, item, rating, timestamp):
    event = parse_event(_msg(user=user, item=item, rating=rating, timestamp=timestamp))
    assert event.user == str(user).strip()
    assert event.item == str(item).strip()
    assert event.rating == rating
    assert event.timestamp == timestamp


# -- the fast JSON path and the binary encoding ------------------------------------

_keys = st.sampled_from(["user", "item", "rating", "timestamp", "u", "x"])
_scalars = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
    st.sampled_from(['"a\\"b"', '"\\u0000"', '"\\ud800"', "NaN", "-Infinity", "1e999", "01"]),
)


@st.composite
def _json_texts(draw) -> bytes:
    """Objects as text, duplicate keys, odd literals and nesting included."""
    pairs = draw(st.lists(st.tuples(_keys, _scalars), max_size=6))
    members = []
    for key, value in pairs:
        literal = value if isinstance(value, str) and draw(st.booleans()) else json.dumps(value)
        if draw(st.integers(0, 9)) == 0:
            literal = "[" + literal + "]" if draw(st.booleans()) else '{"a": 1, "a": 2}'
        members.append(f"{json.dumps(key)}{draw(st.sampled_from([':', ' : ']))}{literal}")
    return ("{" + ",".join(members) + "}").encode()


def _outcome(raw: bytes, **options):
    try:
        return parse_event(raw, **options)
    except InvalidEvent as exc:
        return str(exc)


_edge_ids = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(alphabet=st.sampled_from("ab7 \t\x00\x1fé"), max_size=6),
    st.text(alphabet="x", min_size=254, max_size=258),
    st.booleans(),
    st.none(),
    st.floats(),
)
_edge_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.sampled_from([1e6, -1e6, 1000000.5, 4_102_444_800, 4_102_444_800.5, -0.0]),
    st.text(max_size=3),
    st.booleans(),
    st.none(),
)


@st.composite
def _four_field_texts(draw) -> bytes:
    """The common shape (user, item, rating, timestamp) with values at and past its edges."""
    fields = {
        "user": draw(_edge_ids),
        "item": draw(_edge_ids),
        "rating": draw(_edge_numbers),
        "timestamp": draw(_edge_numbers),
    }
    if draw(st.integers(0, 4)) == 0:
        del fields[draw(st.sampled_from(sorted(fields)))]
    if draw(st.integers(0, 4)) == 0:
        fields["extra"] = draw(_edge_ids)
    return json.dumps(fields, ensure_ascii=draw(st.booleans())).encode()


@given(st.one_of(_json_texts(), _four_field_texts(), st.binary(max_size=120)))
def test_the_fast_json_paths_answer_exactly_like_the_strict_parser(raw):
    with mock.patch.object(events, "_orjson_dict", lambda raw: None):
        strict = _outcome(raw)
    assert _outcome(raw) == strict


def test_msgpack_events_parse_like_json_ones():
    event = {"user": 42, "item": "tt0111", "rating": 4.5, "timestamp": 1_700_000_000}
    assert parse_event(encode_event(event, "msgpack"), encoding="msgpack") == parse_event(
        encode_event(event, "json")
    )
    assert set(ENCODINGS) == set(settings.ENCODINGS)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xc1", "not valid MessagePack"),
        (b"", "not valid MessagePack"),
        (msgpack.packb([1, 2]), "not a MessagePack map"),
        (msgpack.packb({"user": b"\x00", "item": "i", "rating": 5, "timestamp": 1}), "'user'"),
        (msgpack.packb({1: "u"}), "not valid MessagePack"),
        (b"\x84\xa4user\xa1u\xa4user\xa1v\xa4item\xa1i\xa6rating\x05", "duplicate key"),
        (b"\x91" * 5000 + b"\x90", "nested too deeply"),
        (
            msgpack.packb({"user": "u", "item": "i", "rating": float("nan"), "timestamp": 1}),
            "finite",
        ),
    ],
)
def test_bad_msgpack_is_rejected_with_its_reason(raw, reason):
    with pytest.raises(InvalidEvent, match=reason):
        parse_event(raw, encoding="msgpack")


@given(st.binary(max_size=200))
def test_msgpack_parser_never_raises_anything_but_invalid_event(raw):
    with contextlib.suppress(InvalidEvent):
        parse_event(raw, encoding="msgpack")
