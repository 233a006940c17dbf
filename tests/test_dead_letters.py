"""RECO_DEAD_LETTER_TOPIC: every rejected message, unchanged, with why and where it came from."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer

from engine.sources.kafka import bootstrap_servers
from engine.worker.dead_letters import DeadLetters
from tests.support.messages import message
from tests.support.stores import latest
from tests.support.topics import send
from tests.support.workers import Worker, wait_for

GOOD = [message(f"u{n}", f"i{n % 5}", 5) for n in range(20)]
BAD = [b"not json", b'{"user": "u1"}', b"[1, 2, 3]", b'{"user": "", "item": "i", "rating": 1}']


@pytest.mark.integration
def test_exactly_the_rejected_messages_reach_the_dead_letter_topic(engine_env, tmp_path):
    dead_letter_topic = engine_env["RECO_TOPIC"] + "-dead"
    env = {**engine_env, "RECO_DEAD_LETTER_TOPIC": dead_letter_topic}
    messages = GOOD[:7] + BAD[:2] + GOOD[7:15] + BAD[2:] + GOOD[15:]
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        send(env["RECO_BROKER"], env["RECO_TOPIC"], messages)
        done = wait_for(
            lambda: (
                (c := latest(tmp_path / "reco.db")) and c.totals.received == len(messages) and c
            ),
            60,
            "every message",
        )
        assert done.totals.rejected == len(BAD)
        letters = asyncio.run(_read(env["RECO_BROKER"], dead_letter_topic, len(BAD)))
    finally:
        worker.terminate()
    assert [value for value, _ in letters] == BAD
    offsets = [messages.index(bad) for bad in BAD]
    for (_, headers), offset in zip(letters, offsets, strict=True):
        assert headers["reco.error.topic"] == env["RECO_TOPIC"].encode()
        assert headers["reco.error.partition"] == b"0"
        assert headers["reco.error.offset"] == str(offset).encode()
    reasons = [headers["reco.error.reason"].decode() for _, headers in letters]
    assert reasons[0] == "not valid JSON" and reasons[1] == "missing field 'item'"


async def _read(url: str, topic: str, count: int) -> list[tuple[bytes, dict[str, bytes]]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap_servers(url), auto_offset_reset="earliest"
    )
    await consumer.start()
    letters = []
    try:
        async with asyncio.timeout(30):
            while len(letters) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    letters += [(r.value, dict(r.headers)) for r in records]
        await asyncio.sleep(1)  # nothing more may come
        for records in (await consumer.getmany(timeout_ms=500)).values():
            letters += [(r.value, dict(r.headers)) for r in records]
    finally:
        await consumer.stop()
    return letters


def test_a_full_dead_letter_queue_drops_and_counts_without_blocking():
    letters = DeadLetters("dead", "events", "kafka://127.0.0.1:9", {}, max_queued=3)
    for offset in range(5):
        letters.put(b"bad", "not valid JSON", 0, offset)
    assert (letters.queued, letters.dropped, letters.sent) == (3, 2, 0)
