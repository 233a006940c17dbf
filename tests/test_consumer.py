"""The batching consumer's fetch settings and its wait for a full stream buffer (no broker)."""

from __future__ import annotations

import asyncio

from faust.types import TP

from engine.worker.consumer import FETCH_MAX_WAIT_MS, BatchingApp, BatchingConsumer

TOPIC = TP("events", 0)


def new_app() -> BatchingApp:
    return BatchingApp("consumer-test", broker="kafka://127.0.0.1:9", store="memory://")


def test_worker_fetches_wait_the_short_time_not_fausts_second_and_a_half():
    app = new_app()

    async def create():
        return app.consumer._thread._create_worker_consumer(app.transport)

    consumer = asyncio.run(create())
    assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS < 1500


def test_a_full_buffer_holds_the_next_fetch_until_it_drains(monkeypatch):
    app = new_app()
    consumer = app.consumer
    assert isinstance(consumer, BatchingConsumer)
    fetched = []

    async def fetch(self, timeout):
        fetched.append(timeout)
        return {}, set()

    # What follows the wait is Faust's own fetch; record that it ran, and when.
    monkeypatch.setattr(BatchingConsumer.__mro__[1], "_wait_next_records", fetch)

    async def drive():
        consumer._set_active_tps({TOPIC, TP("leader", 0)})
        consumer.on_buffer_full(TOPIC)
        waiting = asyncio.ensure_future(consumer._wait_next_records(30.0))
        for _ in range(5):
            await asyncio.sleep(0)
        held = list(fetched)
        consumer.on_buffer_drop(TOPIC)
        await asyncio.wait_for(waiting, 5.0)
        return held

    held = app.loop.run_until_complete(drive())  # the loop the consumer service waits on
    assert held == [], "fetched the other partitions while the buffer was full"
    assert fetched == [30.0]
    assert TOPIC in consumer._get_active_partitions()


def test_without_a_full_buffer_the_fetch_goes_ahead_at_once(monkeypatch):
    app = new_app()
    consumer = app.consumer
    fetched = []

    async def fetch(self, timeout):
        fetched.append(timeout)
        return {}, set()

    monkeypatch.setattr(BatchingConsumer.__mro__[1], "_wait_next_records", fetch)
    app.loop.run_until_complete(asyncio.wait_for(consumer._wait_next_records(30.0), 5.0))
    assert fetched == [30.0]
