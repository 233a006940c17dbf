"""Sends events to the topic: a MovieLens replay or the synthetic demo stream."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from engine.sources.encoding import event_key
from engine.sources.kafka import bootstrap_servers, declare_topic
from engine.sources.movielens import read_ratings
from engine.sources.progress import Progress
from engine.sources.synthetic import SyntheticConfig, SyntheticStream
from storage import StoreWriter

log = logging.getLogger(__name__)


def movielens_messages(path: str | Path) -> list[bytes]:
    """Every rating in the file as a JSON message, in timestamp order."""
    return [json.dumps(r.as_event()).encode() for r in read_ratings(path)]


def synthetic_messages(config: SyntheticConfig, events: int | None) -> Iterator[bytes]:
    stream = SyntheticStream(config)
    return itertools.islice(stream, events) if events else iter(stream)


def store_item_names(db: Path, names: dict[str, str]) -> None:
    if not names:
        return
    writer = StoreWriter(db)
    try:
        writer.put_item_names(names)
    finally:
        writer.close()


async def send_messages(
    messages: Iterable[bytes] | AsyncIterable[bytes],
    *,
    broker: str,
    topic: str,
    partitions: int,
    replication: int = 1,
    rate: float | None = None,
    total: int | None = None,
    show_progress: bool | None = None,
    options: dict[str, Any] | None = None,
    compression: str | None = None,
) -> int:
    """Send ``messages`` in order, paced to ``rate`` events/s when given; returns the count.

    Each message is keyed by its user id, so a user's events stay in order on
    one partition; the producer is idempotent with ``acks=all``, as
    librdkafka-based clients are by default. ``messages`` may be an async
    iterable (the closed loop awaits the API between them). ``options`` are
    aiokafka client arguments from engine.sources.kafka.client_options (TLS, SASL); by
    default a plaintext connection to ``broker``. ``compression`` is gzip,
    snappy, lz4 or zstd (None: uncompressed).
    """
    options = options or {"bootstrap_servers": bootstrap_servers(broker)}
    await declare_topic(broker, topic, partitions, options, replication=replication)
    producer = await _start_producer(options, compression)
    progress = Progress(total, enabled=show_progress)
    started = time.monotonic()
    sent = 0
    pending = []
    try:
        async for message in _aiter(messages):
            pending.append(await producer.send(topic, message, key=event_key(message)))
            sent += 1
            progress.advance()
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    if pending:
                        await asyncio.gather(*pending)
                        pending.clear()
                    await asyncio.sleep(ahead)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
        progress.close()
    return sent


async def _start_producer(options: dict[str, Any], compression: str | None) -> AIOKafkaProducer:
    """An idempotent producer with ``acks=all``, or one without idempotence if the broker has none.

    Idempotence needs a producer id from the broker: aiokafka asks for it
    with InitProducerId version 0, which the embedded broker refuses (it
    grants later versions, as librdkafka asks). Without it acks=all still waits for
    every in-sync replica, but a send retried after a lost answer may be
    written twice.
    """
    settings = {"linger_ms": 5, "max_batch_size": 256 * 1024, "compression_type": compression}
    producer = AIOKafkaProducer(**options, **settings, acks="all", enable_idempotence=True)
    sender_log = logging.getLogger("aiokafka.producer.sender")
    level = sender_log.level
    sender_log.setLevel(logging.CRITICAL)  # its refusal is said once, below, as a warning
    try:
        await producer.start()
        return producer
    except KafkaError as exc:
        await producer.stop()
        log.warning(
            "the broker grants no producer id for idempotence (%r); sending with acks=all "
            "without it (a retried send may be written twice)",
            exc,
        )
    finally:
        sender_log.setLevel(level)
    producer = AIOKafkaProducer(**options, **settings, acks="all")
    await producer.start()
    return producer


async def _aiter(messages: Iterable[bytes] | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(messages, AsyncIterable):
        async for message in messages:
            yield message
    else:
        for message in messages:
            yield message
