"""Kafka topics in tests: send messages (at once, or paced from a thread), read them back."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from tests.support.messages import KnownStream


def send(
    broker_url: str,
    topic: str,
    messages: list[bytes | None],
    partitions: int = 1,
    max_request_size: int = 1024 * 1024,
) -> None:
    """Send ``messages`` in order, partition by partition round-robin, and wait for the acks."""

    async def go():
        from aiokafka import AIOKafkaProducer

        from engine.sources.kafka import bootstrap_servers, declare_topic

        await declare_topic(broker_url, topic, partitions)
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers(broker_url),
            linger_ms=5,
            acks=1,
            max_request_size=max_request_size,
        )
        await producer.start()
        try:
            pending = []
            for index, message in enumerate(messages):
                # A None value is a tombstone, which Kafka only takes with a key.
                key = b"tombstone" if message is None else None
                partition = index % partitions
                pending.append(await producer.send(topic, message, key=key, partition=partition))
                if len(pending) >= 500:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    asyncio.run(go())


@dataclass
class SentCounts:
    total: int = 0
    positive: int = 0
    bad: int = 0
    per_partition: dict[int, int] = field(default_factory=dict)


class PacedProducer(threading.Thread):
    """Sends a KnownStream to a topic at ``rate`` messages/s from a thread of its own.

    Partitions are chosen round-robin, so the expected offsets are known.
    ``stop()`` ends the stream; ``counts`` then holds what the broker acknowledged.
    """

    def __init__(
        self, broker_url: str, topic: str, stream: KnownStream, rate: float, partitions: int = 1
    ):
        super().__init__(daemon=True)
        self.broker_url = broker_url
        self.topic = topic
        self.stream = stream
        self.rate = rate
        self.partitions = partitions
        self.counts = SentCounts()
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self.started_sending = threading.Event()

    def stop(self, timeout: float = 60) -> SentCounts:
        self._stopping.set()
        self.join(timeout)
        assert not self.is_alive(), "the producer did not stop"
        if self.error:
            raise self.error
        return self.counts

    def run(self) -> None:
        try:
            asyncio.run(self._send())
        except BaseException as exc:  # reported by stop()
            self.error = exc

    async def _send(self) -> None:
        from aiokafka import AIOKafkaProducer

        from engine.sources.kafka import bootstrap_servers, declare_topic

        await declare_topic(self.broker_url, self.topic, self.partitions)
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers(self.broker_url), linger_ms=5, acks=1
        )
        await producer.start()
        self.started_sending.set()
        started = time.monotonic()
        sent = 0
        try:
            while not self._stopping.is_set():
                batch = []
                for _ in range(50):
                    payload, kind = self.stream.next()
                    partition = sent % self.partitions
                    batch.append(
                        (
                            await producer.send(self.topic, payload, partition=partition),
                            kind,
                            partition,
                        )
                    )
                    sent += 1
                for future, kind, partition in batch:
                    await future
                    self._count(kind, partition)
                ahead = sent / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        finally:
            await producer.stop()

    def _count(self, kind: str, partition: int) -> None:
        counts = self.counts
        counts.total += 1
        counts.positive += kind == "positive"
        counts.bad += kind == "bad"
        counts.per_partition[partition] = counts.per_partition.get(partition, 0) + 1


async def read_topic(broker_url: str, topic: str) -> list[tuple[int, bytes | None, bytes]]:
    """Every record of ``topic``, as (partition, key, value), read without a group."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from engine.sources.kafka import bootstrap_servers

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(broker_url), enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()  # metadata, for the partitions
        assigned = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        records = []
        while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(*assigned, timeout_ms=1000)
            for tp, messages in batches.items():
                records.extend((tp.partition, m.key, m.value) for m in messages)
        return records
    finally:
        await consumer.stop()
