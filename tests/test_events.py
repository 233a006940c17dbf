"""The event contract: valid messages parse, every class of bad input is rejected with a reason."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.events import Interaction, InvalidEvent, parse_event, preview


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
