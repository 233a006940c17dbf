"""Hostile input: a worker fed >= 10,000 generated bad messages keeps going, counts and keeps each.

Also property tests for the event parser beyond those in test_events.py.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.sources.events import (
    MAX_ID_LENGTH,
    MAX_TIMESTAMP,
    PAYLOAD_PREVIEW_CHARS,
    InvalidEvent,
    parse_event,
    preview,
)
from storage import StoreReader
from tests.support.messages import message
from tests.support.stores import latest
from tests.support.topics import send
from tests.support.workers import Worker, engine_env_with, rss_mb, wait_for

MB = 1024 * 1024


def _valid(rng: random.Random, n: int) -> tuple[bytes, str, str, bool]:
    user, item = f"user-{rng.randrange(300)}", f"item-{rng.randrange(500)}"
    rating = rng.choice((1, 2, 3, 4, 5))
    return message(user, item, rating, 1_700_000_000 + n), user, item, rating >= 4


def _bad(rng: random.Random, n: int) -> tuple[bytes | None, str]:
    """One malformed message of a random kind, and the reason the engine must give."""
    good = message("u", "i", 5)
    kind = n % 20
    if kind == 0:
        return b"\xff\xfe" + rng.randbytes(rng.randrange(0, 200)), "not UTF-8"
    if kind == 1:
        return good[: rng.randrange(0, len(good))], "not valid JSON"
    if kind == 2:
        depth = rng.randrange(2_000, 30_000)
        return b"[" * depth + b"]" * depth, "nested too deeply"
    if kind == 3:
        depth = rng.randrange(2_000, 6_000)
        return b'{"a":' * depth + b"1" + b"}" * depth, "nested too deeply"
    if kind == 4:
        value = rng.choice(["[1, 2]", '"text"', "42", "null", "true", "3.5", "[]"])
        return value.encode(), "not a JSON object"
    if kind == 5:
        fields = {"user": "u", "item": "i", "rating": 5, "timestamp": 1}
        missing = rng.choice(list(fields))
        del fields[missing]
        return json.dumps(fields).encode(), f"missing field '{missing}'"
    if kind == 6:
        field, value = rng.choice(
            [("user", 1.5), ("user", None), ("item", [1]), ("item", {"a": 1}), ("user", True)]
        )
        fields = {"user": "u", "item": "i", "rating": 5, "timestamp": 1, field: value}
        return json.dumps(fields).encode(), "must be a string or an integer"
    if kind == 7:
        field, value = rng.choice([("rating", "5"), ("timestamp", "now"), ("rating", None)])
        fields = {"user": "u", "item": "i", "rating": 5, "timestamp": 1, field: value}
        return json.dumps(fields).encode(), "must be a number"
    if kind == 8:
        constant = rng.choice(["NaN", "Infinity", "-Infinity"])
        return (
            f'{{"user": "u", "item": "i", "rating": {constant}, "timestamp": 1}}'.encode(),
            "non-finite",
        )
    if kind == 9:
        field, value = rng.choice(
            [("rating", 1e300), ("rating", -1e7), ("timestamp", -5), ("timestamp", 1e15)]
        )
        fields = {"user": "u", "item": "i", "rating": 5, "timestamp": 1, field: value}
        return json.dumps(fields).encode(), f"'{field}' is out of range"
    if kind == 10:
        return b'{"user": "u", "item": "i", "rating": 1e999, "timestamp": 1}', "not finite"
    if kind == 11:
        digits = "9" * rng.randrange(5_000, 20_000)  # beyond Python's int parsing limit
        return f'{{"user": "u", "item": "i", "rating": {digits}, "timestamp": 1}}'.encode(), (
            "not valid JSON"
        )
    if kind == 12:
        big = 10**400  # an integer JSON number float() cannot hold
        return json.dumps({"user": "u", "item": "i", "rating": big, "timestamp": 1}).encode(), (
            "'rating' is out of range"
        )
    if kind == 13:
        field = rng.choice(["user", "item"])
        fields = {"user": "u", "item": "i", "rating": 5, "timestamp": 1, field: " " * (n % 3)}
        return json.dumps(fields).encode(), f"'{field}' is empty"
    if kind == 14:
        fields = {"user": "u" * rng.randrange(257, 5_000), "item": "i", "rating": 5}
        return json.dumps(fields | {"timestamp": 1}).encode(), "longer than"
    if kind == 15:
        return (
            b'{"user": "u", "item": "i", "rating": 5, "timestamp": 1, "user": "v"}',
            "duplicate key",
        )
    if kind == 16:
        fields = {"user": "a\x00b", "item": "i\n", "rating": 5, "timestamp": 1}
        return json.dumps(fields).encode(), "control characters"
    if kind == 17:
        return b'{"user": "\\udc80", "item": "i", "rating": 5, "timestamp": 1}', "control"
    if kind == 18:
        return None, "empty message"  # a Kafka tombstone: no value at all
    return b"", "not valid JSON"


def _huge(rng: random.Random, size: int, id_field: bool) -> bytes:
    if id_field:
        return json.dumps({"user": "x" * size, "item": "i", "rating": 5, "timestamp": 1}).encode()
    return b'{"pad": "' + b"y" * size + b'"}'


def _stream(seed: int, rounds: int, bad_per_round: int):
    """Rounds of interleaved messages: (payload, expected reason or None, user, item, positive)."""
    rng = random.Random(seed)
    result = []
    n = 0
    for _ in range(rounds):
        batch = []
        for _ in range(bad_per_round):
            payload, reason = _bad(rng, n)
            batch.append((payload, reason, None, None, False))
            n += 1
            if rng.random() < 0.5:
                payload, user, item, positive = _valid(rng, n)
                batch.append((payload, None, user, item, positive))
        for size in (1 * MB, 1 * MB, 1 * MB, 1 * MB, 10 * MB, 10 * MB):
            batch.insert(
                rng.randrange(len(batch)),
                (_huge(rng, size, size == MB), "too large", None, None, False),
            )
        result.append(batch)
    return result


class PeakMemory(threading.Thread):
    """Samples a process's resident memory (MB) until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0.0, threading.Event()

    def run(self):
        while not self.done.is_set():
            with contextlib.suppress(Exception):
                self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.1)


@pytest.mark.integration
def test_a_hostile_stream_never_stops_the_worker_and_every_message_is_accounted(
    engine_env, tmp_path
):
    db = tmp_path / "reco.db"
    env = engine_env_with(engine_env, RECO_KEEP_REJECTED=50_000, RECO_CHECKPOINT_INTERVAL=0.5)
    rounds = _stream(seed=99, rounds=3, bad_per_round=3_400)
    worker = Worker(env, tmp_path / "worker.log").start()
    memory = PeakMemory(worker.pid)
    memory.start()
    rss_after_round = []
    sent = []
    try:
        for batch in rounds:
            send(
                env["RECO_BROKER"],
                env["RECO_TOPIC"],
                [m[0] for m in batch],
                max_request_size=16 * MB,
            )
            sent += batch
            expected = len(sent)
            wait_for(
                lambda n=expected: (c := latest(db)) and c.totals.received == n,
                180,
                f"{expected} messages counted",
                every=0.5,
            )
            assert worker.alive(), worker.output()[-3000:]
            rss_after_round.append(rss_mb(worker.pid))
        assert worker.terminate() == 0
    finally:
        memory.done.set()
        worker.stop_quietly()

    bad = [(offset, m) for offset, m in enumerate(sent) if m[1] is not None]
    valid = [m for m in sent if m[1] is None]
    assert len(bad) >= 10_000
    totals = latest(db).totals
    assert totals.received == len(sent)
    assert totals.rejected == len(bad)
    assert totals.accepted == len(valid)
    assert totals.positive == sum(m[4] for m in valid)
    # Every valid positive event was learned: each of its users is in the model.
    assert latest(db).users == len({m[2] for m in valid if m[4]})

    stored = {r.offset: r for r in StoreReader(db).rejected_events(limit=len(bad) + 10)}
    assert len(stored) == len(bad)
    for offset, (_, reason, *_) in bad:
        row = stored[offset]
        assert reason in row.reason, (offset, reason, row.reason)
        assert len(row.payload) <= PAYLOAD_PREVIEW_CHARS + 40  # truncated for the store
    assert "Traceback" not in worker.output()

    growth = rss_after_round[-1] - rss_after_round[0]
    print(
        f"worker RSS after each round {[round(r) for r in rss_after_round]} MB, "
        f"peak {memory.peak:.0f} MB, growth {growth:.0f} MB over {len(sent)} messages"
    )
    assert growth < 150, rss_after_round
    assert memory.peak < 1500


# -- properties of the parser ----------------------------------------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "user": _json_values,
        "item": _json_values,
        "rating": _json_values,
        "timestamp": _json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(_json_values, _fields))
def test_any_json_either_parses_within_the_contract_or_is_refused_with_a_reason(data):
    raw = json.dumps(data).encode()
    try:
        parsed = parse_event(raw)
    except InvalidEvent as exc:
        assert str(exc)
        return
    for identifier in (parsed.user, parsed.item):
        assert 0 < len(identifier) <= MAX_ID_LENGTH
        assert identifier == identifier.strip()
        assert all(ord(ch) >= 32 for ch in identifier)
    assert math.isfinite(parsed.rating)
    assert 0 <= parsed.timestamp <= MAX_TIMESTAMP


_valid_events = st.fixed_dictionaries(
    {
        "user": st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=9),
        "item": st.integers(0, 10**9),
        "rating": st.floats(-5, 5),
        "timestamp": st.integers(0, 4_000_000_000),
    }
)


@settings(max_examples=200, deadline=None)
@given(fields=_valid_events, extra=st.dictionaries(st.text(min_size=1, max_size=8), _json_values))
def test_extra_fields_never_change_a_valid_event(fields, extra):
    extra = {k: v for k, v in extra.items() if k not in fields}
    assert parse_event(json.dumps(fields | extra).encode()) == parse_event(
        json.dumps(fields).encode()
    )


@settings(max_examples=200, deadline=None)
@given(fields=_valid_events, cut=st.floats(0, 1, exclude_max=True))
def test_every_truncation_of_a_valid_event_is_refused(fields, cut):
    raw = json.dumps(fields).encode()
    with pytest.raises(InvalidEvent):
        parse_event(raw[: int(len(raw) * cut)])


@settings(max_examples=200, deadline=None)
@given(fields=_valid_events, key=st.sampled_from(["user", "item", "rating", "timestamp"]))
def test_a_repeated_key_is_refused_even_with_the_same_value(fields, key):
    raw = (
        json.dumps(fields).encode()[:-1]
        + f", {json.dumps(key)}: {json.dumps(fields[key])}}}".encode()
    )
    with pytest.raises(InvalidEvent, match="duplicate key"):
        parse_event(raw)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=5000) | st.builds(lambda n: b"\xff" * n, st.integers(0, 70_000)))
def test_the_preview_is_short_and_storable_whatever_the_bytes(raw):
    text = preview(raw)
    assert len(text) <= PAYLOAD_PREVIEW_CHARS + 40
    text.encode("utf-8")  # no lone surrogates: SQLite can store it
    with contextlib.suppress(InvalidEvent):
        parse_event(raw)


@settings(max_examples=100, deadline=None)
@given(size=st.integers(64 * 1024 + 1, 3 * MB))
def test_anything_over_the_size_limit_is_refused_before_decoding(size):
    with pytest.raises(InvalidEvent, match="payload too large"):
        parse_event(b"\xff" * size)
