"""The engine against the Kafka clients users produce with: confluent-kafka and kafka-python.

Each client sends to a real worker (`python -m engine worker`) through the
embedded broker what users' producers send: keys and headers, every
compression codec, idempotent producers with acks=all (the Java client's
default since Kafka 3.0; librdkafka 2.16 still defaults to plain
producers, with producer id -1), integer and string ids and the seed's own
message shape, with a few malformed messages among them. The store must then count exactly what
was sent. The batches are read back from the broker as they are stored, to
show that each codec really reached the engine compressed and each producer
really was idempotent (Tansu gave it a producer id and sequence numbers).

A second worker runs as a user without `cramjam` would: it cannot read
snappy, lz4 or zstd. Such batches must become rejections that name the
codec, while the worker lives on and counts what follows.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

from engine.sources.broker import free_port
from engine.sources.kafka import bootstrap_servers, declare_topic
from engine.worker.batches import CODEC_MASK, CODECS
from storage import Checkpoint, StoreReader, Totals
from tests.support.paths import PYTHON, REPO
from tests.support.stores import latest
from tests.support.workers import Worker, wait_for

confluent_kafka = pytest.importorskip(
    "confluent_kafka",
    reason="confluent-kafka is a test dependency: pip install -r tests/requirements.txt",
)
kafka = pytest.importorskip(
    "kafka", reason="kafka-python is a test dependency: pip install -r tests/requirements.txt"
)

pytestmark = pytest.mark.integration

PARTITIONS = 2  # keyed messages spread over both, as users' keys do
EVERY_CODEC = ("none", "gzip", "snappy", "lz4", "zstd")
COUNT_S = 120  # the first count includes the worker's start (compiled loops, group join)


@dataclass(frozen=True)
class Message:
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    kind: str = "positive"  # or 'negative' (rating below 4) or 'bad' (a rejection)


@dataclass(frozen=True)
class StoredBatch:
    """A record batch as the broker holds it."""

    partition: int
    first: int
    count: int
    codec: str
    producer_id: int
    base_sequence: int


# -- what users send -----------------------------------------------------------


def messages_from(client: str, codec: str, n: int = 30, bad: bool = True) -> list[Message]:
    """A user's mix: the seed's shape with integer ids, string ids, keys, headers, bad messages."""
    messages = []
    for i in range(n):
        rating = 1 + i % 5
        if i % 2:
            body = {"user": 196 + i % 6, "item": 242 + i % 9, "rating": rating}
            body["timestamp"] = 881250949 + i
        else:
            body = {"user": f"{client}-{codec}-u{i % 4}", "item": f"film-{i % 7}"}
            body.update(rating=rating, timestamp=1_700_000_000 + i)
        key = str(body["user"]).encode() if i % 3 else None  # keyed by user, as is usual
        headers = (("source", client.encode()), ("trace-id", f"{codec}-{i}".encode()))
        kind = "positive" if rating >= 4 else "negative"
        messages.append(Message(json.dumps(body).encode(), key, headers if i % 4 else (), kind))
    if not bad:
        return messages
    return messages + [
        Message(b'{"user": 196, "item": 242}', b"196", kind="bad"),  # no rating, no timestamp
        Message(b"user=196 item=242", kind="bad"),
        Message(None, b"196", kind="bad"),  # a tombstone
    ]


def send_with_confluent_kafka(broker_url: str, topic: str, codec: str, messages) -> None:
    """Produce with librdkafka, idempotent and acks=all, with ``codec``."""
    failed = []
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap_servers(broker_url),
            "compression.type": codec,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 50,
        }
    )
    for message in messages:
        producer.produce(
            topic,
            message.value,
            key=message.key,
            headers=list(message.headers),
            on_delivery=lambda error, _: error and failed.append(error),
        )
    assert producer.flush(30) == 0 and not failed, failed


def send_with_kafka_python(broker_url: str, topic: str, codec: str, messages) -> None:
    """Produce with kafka-python, idempotent and acks=all, with ``codec``."""
    producer = kafka.KafkaProducer(
        bootstrap_servers=bootstrap_servers(broker_url),
        compression_type=None if codec == "none" else codec,
        enable_idempotence=True,
        acks="all",
        linger_ms=50,
    )
    try:
        futures = [
            producer.send(topic, m.value, key=m.key, headers=list(m.headers)) for m in messages
        ]
        producer.flush(30)
        for future in futures:
            future.get(30)
    finally:
        producer.close(10)


SENDERS = {"confluent-kafka": send_with_confluent_kafka, "kafka-python": send_with_kafka_python}


# -- what the broker holds -----------------------------------------------------


def stored_batches(broker_url: str, topic: str, since: dict[int, int]) -> list[StoredBatch]:
    """The record batches of each partition from its offset in ``since`` on, as stored."""
    return asyncio.run(_stored_batches(broker_url, topic, since))


async def _stored_batches(broker_url, topic, since) -> list[StoredBatch]:
    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers(broker_url))
    await client.bootstrap()
    try:
        client.add_topic(topic)
        await client.force_metadata_update()
        batches = []
        for partition, offset in sorted(since.items()):
            node = client.cluster.leader_for_partition(TopicPartition(topic, partition))
            request = FetchRequest(500, 1, 1 << 26, 0, [(topic, [(partition, offset, 1 << 26)])])
            response = await client.send(node, request)
            for _, partitions in response.topics:
                for _, error, *_, message_set in partitions:
                    assert error == 0, f"fetching {topic}/{partition}: error {error}"
                    batches += _batches_of(partition, MemoryRecords(message_set))
    finally:
        await client.close()
    return batches


def _batches_of(partition: int, records) -> Iterator[StoredBatch]:
    while records.has_next():
        batch = records.next_batch()
        yield StoredBatch(
            partition,
            batch.base_offset,
            batch.last_offset_delta + 1,
            CODECS[batch.attributes & CODEC_MASK],
            batch.producer_id,
            batch.base_sequence,
        )


# -- the worker ----------------------------------------------------------------


def worker_env(
    folder: Path, broker_url: str, partitions: int = PARTITIONS, pythonpath: str = str(REPO)
) -> dict[str, str]:
    """Environment for an engine process of its own: topic, group, store, API port."""
    folder.mkdir(parents=True, exist_ok=True)
    name = folder.name.replace("_", "-")
    return {
        **os.environ,
        "RECO_BROKER": broker_url,
        "RECO_TOPIC": f"events-{name}",
        "RECO_GROUP": f"group-{name}",
        "RECO_PARTITIONS": str(partitions),
        "RECO_DB": str(folder / "reco.db"),
        "RECO_DATADIR": str(folder / "faust"),
        "RECO_CHECKPOINT_INTERVAL": "1",
        "RECO_WEB_PORT": str(free_port()),
        "PYTHONPATH": pythonpath,
    }


@dataclass
class RunningWorker:
    worker: Worker
    env: dict[str, str]
    broker_url: str

    @property
    def topic(self) -> str:
        return self.env["RECO_TOPIC"]

    @property
    def db(self) -> Path:
        return Path(self.env["RECO_DB"])

    def counted(self, received: int) -> Checkpoint:
        """The first checkpoint that has received exactly ``received`` messages in total."""

        def reached() -> Checkpoint | None:
            assert self.worker.alive(), f"the worker died:\n{self.worker.output()[-3000:]}"
            checkpoint = latest(self.db)
            return checkpoint if checkpoint and checkpoint.totals.received >= received else None

        checkpoint = wait_for(reached, COUNT_S, f"{received} messages counted")
        assert checkpoint.totals.received == received, "messages counted more than once"
        return checkpoint


def start_worker(env: dict[str, str], broker_url: str, log: Path) -> Iterator[RunningWorker]:
    """A worker on a declared topic; stopped with SIGTERM, which must exit 0."""
    asyncio.run(declare_topic(broker_url, env["RECO_TOPIC"], int(env["RECO_PARTITIONS"])))
    worker = Worker(env, log).start()
    try:
        yield RunningWorker(worker, env, broker_url)
        assert worker.alive(), worker.output()[-3000:]
        assert worker.terminate() == 0, worker.output()[-3000:]
    finally:
        worker.stop_quietly()


@pytest.fixture(scope="module")
def engine(broker, tmp_path_factory) -> Iterator[RunningWorker]:
    """One worker for the module's client tests, with every codec's library."""
    folder = tmp_path_factory.mktemp("clients")
    yield from start_worker(worker_env(folder, broker.url), broker.url, folder / "worker.log")


def counted_before(engine: RunningWorker) -> tuple[Totals, dict[int, int]]:
    """The totals so far, and where each partition's new messages will begin."""
    checkpoint = latest(engine.db)
    if checkpoint is None:
        return Totals(), dict.fromkeys(range(PARTITIONS), 0)
    return checkpoint.totals, {**dict.fromkeys(range(PARTITIONS), 0), **checkpoint.offsets}


# -- the tests -----------------------------------------------------------------


@pytest.mark.parametrize("client", SENDERS)
def test_every_codec_from_an_idempotent_producer_is_counted_exactly(engine, client):
    before, since = counted_before(engine)
    sent = []
    for codec in EVERY_CODEC:
        messages = messages_from(client, codec)
        SENDERS[client](engine.broker_url, engine.topic, codec, messages)
        sent += messages

    batches = stored_batches(engine.broker_url, engine.topic, since)
    assert sum(b.count for b in batches) == len(sent)
    assert {b.codec for b in batches} == set(EVERY_CODEC), batches
    # Idempotent produce works on Tansu: each producer got an id and numbered its batches.
    assert all(b.producer_id >= 0 and b.base_sequence >= 0 for b in batches), batches
    assert len({b.producer_id for b in batches}) == len(EVERY_CODEC)

    totals = engine.counted(before.received + len(sent)).totals
    time.sleep(2)  # two more checkpoints: anything counted twice would show by now
    assert latest(engine.db).totals == totals
    kinds = [m.kind for m in sent]
    assert totals.accepted - before.accepted == len(sent) - kinds.count("bad")
    assert totals.positive - before.positive == kinds.count("positive")
    # Keys and headers are not part of the contract: only the bad messages are rejected.
    assert totals.rejected - before.rejected == kinds.count("bad")

    # Integer and string ids alike: every user with a positive event is known, by its string.
    learned = {str(json.loads(m.value)["user"]) for m in sent if m.kind == "positive"}
    assert learned <= set(StoreReader(engine.db).user_ids(limit=100_000))
    assert engine.worker.alive()


@pytest.fixture
def user_without_cramjam(broker, tmp_path) -> Iterator[RunningWorker]:
    """A worker that cannot import cramjam, as on a machine where it was never installed.

    A folder ahead of everything else on PYTHONPATH holds a `cramjam` module
    whose import fails exactly as a missing package's does, so aiokafka finds
    no snappy, lz4 or zstd support; nothing else changes.
    """
    stub = tmp_path / "no-cramjam"
    stub.mkdir()
    (stub / "cramjam.py").write_text(
        'raise ModuleNotFoundError("No module named \'cramjam\'", name="cramjam")\n'
    )
    env = worker_env(tmp_path / "no-cramjam-worker", broker.url, 1, f"{stub}:{REPO}")
    codecs = subprocess.run(
        [PYTHON, "-c", "import aiokafka.codec as c; print(c.has_lz4(), c.has_zstd())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert codecs.stdout.split() == ["False", "False"], "the stub did not hide cramjam"
    yield from start_worker(env, broker.url, tmp_path / "worker.log")


def test_batches_without_their_codec_library_are_rejected_and_the_worker_goes_on(
    user_without_cramjam,
):
    engine = user_without_cramjam
    url, topic = engine.broker_url, engine.topic
    good = messages_from("confluent-kafka", "none", 10, bad=False)
    send_with_confluent_kafka(url, topic, "none", good[:5])
    for codec in ("lz4", "zstd", "snappy"):  # valid events, in batches it cannot decompress
        send_with_confluent_kafka(
            url, topic, codec, messages_from("confluent-kafka", codec, 7, False)
        )
    send_with_confluent_kafka(url, topic, "none", good[5:])

    batches = stored_batches(url, topic, {0: 0})
    unreadable = [b for b in batches if b.codec in ("snappy", "lz4", "zstd")]
    assert sorted(b.codec for b in unreadable) == ["lz4", "snappy", "zstd"]
    expected = {
        (b.partition, b.first + i): f"unsupported compression: {b.codec} ({b.count} messages "
        f"at offsets {b.first}-{b.first + b.count - 1}; install cramjam to read them)"
        for b in unreadable
        for i in range(b.count)
    }

    assert len(expected) == 3 * 7  # one rejection per message of each batch
    totals = engine.counted(len(good) + len(expected)).totals
    assert (totals.accepted, totals.rejected) == (len(good), len(expected))
    assert totals.positive == sum(m.kind == "positive" for m in good)
    kept = StoreReader(engine.db).rejected_events(limit=100)
    assert {(e.partition, e.offset): e.reason for e in kept} == expected
    assert engine.worker.alive()
    output = engine.worker.output()
    for codec in ("lz4", "zstd", "snappy"):
        assert f"unsupported compression: {codec} in partition 0" in output
    assert "Traceback" not in output
