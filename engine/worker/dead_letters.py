"""Rejected messages, unchanged, to a dead-letter topic (RECO_DEAD_LETTER_TOPIC).

As Kafka Connect's dead-letter queue does: each rejected message goes to
the topic as it came, with headers saying why and where it came from, so a
user can inspect, fix and replay it with the tools they already have. The
store keeps its bounded sample as before.

The topic must never hold the worker up: rejected messages wait in a
bounded queue for a sender task, and when the queue is full (the topic is
unreachable, or slower than the rejections) the newest are dropped and
counted. The rejection itself is always counted by the engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from engine.sources.kafka import declare_topic
from engine.worker.throttle import Throttle

log = logging.getLogger(__name__)

MAX_QUEUED = 10_000  # rejected messages waiting for the topic, at most
RETRY_S = 2.0  # seconds between attempts to reach a topic that failed
SEND_BATCH = 500  # messages handed to the producer before waiting for their acks

# Header names, after Kafka Connect's __connect.errors.* ones.
REASON, TOPIC, PARTITION, OFFSET = (
    "reco.error.reason",
    "reco.error.topic",
    "reco.error.partition",
    "reco.error.offset",
)


class DeadLetters:
    """Sends rejected messages to ``topic``, in the order they were rejected."""

    def __init__(
        self,
        topic: str,
        source_topic: str,
        broker_url: str,
        options: dict[str, Any],
        *,
        replication: int = 1,
        max_queued: int = MAX_QUEUED,
    ):
        self.topic = topic
        self._source = source_topic.encode()
        self._broker_url = broker_url
        self._options = options
        self._replication = replication
        self._queue: deque[tuple[bytes | None, list[tuple[str, bytes]]]] = deque()
        self._max_queued = max_queued
        self._waiting = asyncio.Event()
        self.sent = 0  # acknowledged by the broker
        self.dropped = 0  # not sent: the queue was full, or the broker refused them
        if not any(isinstance(f, Throttle) for f in log.filters):
            log.addFilter(Throttle())  # an unreachable topic fails every send: a line per 30 s

    def put(self, raw: bytes | None, reason: str, partition: int, offset: int) -> None:
        """Queue one rejected message (a processor rejection listener); never blocks."""
        if len(self._queue) >= self._max_queued:
            self.dropped += 1
            return
        headers = [
            (REASON, reason.encode()),
            (TOPIC, self._source),
            (PARTITION, str(partition).encode()),
            (OFFSET, str(offset).encode()),
        ]
        self._queue.append((None if raw is None else bytes(raw), headers))
        self._waiting.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        """Send what is queued, for as long as the worker runs (a Faust task)."""
        producer = await self._connect()
        try:
            while True:
                await self._waiting.wait()
                self._waiting.clear()
                await self._drain(producer)
        finally:
            await producer.stop()

    async def _connect(self) -> AIOKafkaProducer:
        """A started producer, once the topic is declared; retried until the broker answers."""
        while True:
            producer = AIOKafkaProducer(**self._options, acks="all", linger_ms=5)
            try:
                await declare_topic(
                    self._broker_url, self.topic, 1, self._options, self._replication
                )
                await producer.start()
                return producer
            except (KafkaError, OSError) as exc:
                await producer.stop()
                log.warning("dead-letter topic %s unreachable (%r); retrying", self.topic, exc)
                await asyncio.sleep(RETRY_S)

    async def flush(self, timeout: float) -> None:
        """Send what is still queued, waiting ``timeout`` seconds at most (at shutdown)."""
        if not self._queue:
            return
        try:
            producer = await asyncio.wait_for(self._connect(), timeout)
        except TimeoutError:
            self.dropped += len(self._queue)
            self._queue.clear()
            return
        try:
            await asyncio.wait_for(self._drain(producer), timeout)
        except TimeoutError:
            self.dropped += len(self._queue)
            self._queue.clear()
        finally:
            await producer.stop()

    async def _drain(self, producer: AIOKafkaProducer) -> None:
        while self._queue:
            await self._send_some(producer)

    async def _send_some(self, producer: AIOKafkaProducer) -> None:
        batch = [self._queue.popleft() for _ in range(min(SEND_BATCH, len(self._queue)))]
        try:
            acks = [
                await producer.send(self.topic, value, headers=headers) for value, headers in batch
            ]
            results = await asyncio.gather(*acks, return_exceptions=True)
        except KafkaError as exc:
            results = [exc] * len(batch)
        failed = [r for r in results if isinstance(r, BaseException)]
        self.sent += len(batch) - len(failed)
        self.dropped += len(failed)
        if failed:
            log.warning(
                "%d rejected messages not written to dead-letter topic %s (%r)",
                len(failed),
                self.topic,
                failed[0],
            )
            await asyncio.sleep(RETRY_S)
