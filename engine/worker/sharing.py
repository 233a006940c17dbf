"""What a deployment's workers share through Kafka: item increments, and partition handovers.

Two topics next to the events topic, with as many partitions as it has, named
after the consumer group (a deployment) and the events topic:

- ``<group>-<topic>-items``: every positive event a worker learned, as its increment
  of the item statistics (engine.processing.partitions), in partition ``p``
  for events of partition ``p``. Every worker reads all of it and adds the
  others' (StreamProcessor.apply_shared), so the model's item side is the
  whole deployment's. Each event counts once at each worker, whoever sent it
  and however often (it is skipped below the partition's ``applied`` offset).
- ``<group>-<topic>-changelog`` (compacted): per partition, each checkpoint's changed
  users (key ``u:<user>``, their items) and then the partition's own record
  (key ``partition``: its offset and counts). A worker given the partition
  reads it from the start and continues where the last owner checkpointed:
  Kafka hands state over, never another worker's disk.

A checkpoint sends its increments first, then the changelog: whatever a
handover's offset says was learned has its increments in ``-items`` already.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from engine.processing.partitions import SharedEvent, UserHandover
from engine.processing.processor import StreamProcessor
from engine.settings import Settings
from engine.sources.kafka import client_options, declare_topic, end_offsets, partition_count
from storage import PartitionState, Totals

log = logging.getLogger(__name__)

EVENTS_PER_MESSAGE = 2_000  # shared events in one message: some 80 kB, under Kafka's 1 MB
PARTITION_KEY = b"partition"
USER_PREFIX = b"u:"
CATCH_UP_S = 30.0  # how long a new owner waits for the increments a handover relies on
POLL_MS = 200

Message = tuple[str, int, bytes | None, bytes]  # (topic, partition, key, value)


def _json(value) -> bytes:
    return json.dumps(value).encode()


def items_topic(group: str, topic: str) -> str:
    """The deployment's increments: per consumer group, as Faust names its tables' changelogs
    (two groups reading one topic are two deployments, each with its own model)."""
    return f"{group}-{topic}-items"


def changelog_topic(group: str, topic: str) -> str:
    return f"{group}-{topic}-changelog"


class Handover:
    """A partition's state as its changelog holds it: offset, counts, users; None offset if empty."""

    def __init__(self) -> None:
        self.offset: int | None = None
        self.totals = Totals()
        self.worker: str | None = None
        self.users: dict[str, list[str]] = {}

    def add(self, key: bytes | None, value: bytes | None) -> None:
        if key is None or value is None:
            return
        record = json.loads(value)
        if key == PARTITION_KEY:
            self.offset = int(record["offset"])
            self.totals = Totals(**record["totals"])
            self.worker = record.get("worker")
        elif key.startswith(USER_PREFIX):
            self.users[key[len(USER_PREFIX) :].decode()] = list(record["items"])

    def user_list(self) -> list[UserHandover]:
        return list(self.users.items())


class Sharing:
    """The worker's side of the two topics: send at checkpoints, read increments, read handovers."""

    def __init__(self, settings: Settings, processor: StreamProcessor, worker: str):
        self.settings = settings
        self.processor = processor
        self.worker = worker
        self.items = items_topic(settings.group, settings.topic)
        self.changelog = changelog_topic(settings.group, settings.topic)
        self.options = client_options(settings)
        # .items partition -> next offset to read; restored from the store's checkpoint.
        self.read: dict[int, int] = {}
        self.partitions = 0
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._unsent: list[Message] = []  # kept for the next send

    async def start(self) -> None:
        """Create the topics (as many partitions as the events topic) and connect."""
        settings = self.settings
        self.partitions = await partition_count(settings.topic, self.options) or settings.partitions
        for topic, config in (
            (self.items, {}),
            (self.changelog, {"cleanup.policy": "compact"}),
        ):
            try:
                await declare_topic(
                    settings.broker,
                    topic,
                    self.partitions,
                    self.options,
                    replication=settings.replication,
                    config=config,
                )
            except Exception as exc:  # a cluster may leave creating topics to its operators
                log.warning("could not create topic %s (%r); using it as it is", topic, exc)
        self._producer = AIOKafkaProducer(**self.options, acks="all", linger_ms=5)
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            **self.options, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await self._consumer.start()
        partitions = [TopicPartition(self.items, p) for p in range(self.partitions)]
        self._consumer.assign(partitions)
        ends = await end_offsets(partitions, self.options)
        for tp in partitions:
            position = self.read.get(tp.partition)
            if position is None or position > ends[tp]:  # new, or the broker forgot the topic
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, position)

    async def stop(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                try:
                    await client.stop()
                except Exception as exc:  # the broker may be gone; nothing is left to send
                    log.debug("closing a Kafka client: %r", exc)

    # -- other workers' increments ---------------------------------------------

    async def run(self) -> None:
        """Add the other workers' increments as they come (the worker's task, until it stops)."""
        consumer = self._consumer
        while consumer is not None:
            try:
                batches = await consumer.getmany(timeout_ms=POLL_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reading %s: %r; retrying", self.items, exc)
                await asyncio.sleep(1.0)
                continue
            for tp, messages in batches.items():
                for message in messages:
                    self._apply(message.value)
                    self.read[tp.partition] = message.offset + 1

    def _apply(self, value: bytes | None) -> None:
        try:
            record = json.loads(value)
            partition, events = int(record["p"]), record["e"]
        except (TypeError, ValueError, KeyError) as exc:
            log.warning("skipping a message of %s that is not an increment: %r", self.items, exc)
            return
        self.processor.apply_shared(partition, events)

    async def caught_up(self, partition: int, timeout: float = CATCH_UP_S) -> bool:
        """Wait until every increment of ``partition`` sent so far is added; False on timeout."""
        consumer = self._consumer
        if consumer is None:
            return False
        tp = TopicPartition(self.items, partition)
        end = (await end_offsets([tp], self.options))[tp]
        deadline = time.monotonic() + timeout
        while self.read.get(partition, 0) < end:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    # -- sending at checkpoints ----------------------------------------------

    async def send(
        self,
        shared: dict[int, list[SharedEvent]],
        users: dict[int, list[UserHandover]],
        states: list[PartitionState],
    ) -> None:
        """Send the increments, then the changelog: users first, each partition's record last.

        Raises if the broker does not take them; they are kept and go first
        with the next call.
        """
        records = [
            (
                self.changelog,
                state.partition,
                PARTITION_KEY,
                _json(
                    {
                        "offset": state.offset,
                        "totals": vars(state.totals),
                        "worker": self.worker,
                        "time": time.time(),
                    }
                ),
            )
            for state in states
        ]
        batch = self._unsent + self._increments(shared) + self._changes(users)
        self._unsent = []
        try:
            await self._send_all(batch)
        except BaseException:  # a timeout cancels it too
            self._unsent = batch  # sent again (each counts once) before the next ones
            raise
        # Only once the increments and users are acknowledged: a partition's record says
        # they are there. One that fails is sent anew, newer, at the next checkpoint.
        await self._send_all(records)

    def _increments(self, shared: dict[int, list[SharedEvent]]) -> list[Message]:
        return [
            (self.items, p, None, _json({"p": p, "e": events[i : i + EVENTS_PER_MESSAGE]}))
            for p, events in sorted(shared.items())
            for i in range(0, len(events), EVENTS_PER_MESSAGE)
        ]

    def _changes(self, users: dict[int, list[UserHandover]]) -> list[Message]:
        return [
            (self.changelog, p, USER_PREFIX + user.encode(), _json({"items": items}))
            for p, handovers in sorted(users.items())
            for user, items in handovers
        ]

    def defer(
        self, shared: dict[int, list[SharedEvent]], users: dict[int, list[UserHandover]]
    ) -> None:
        """Keep increments and users for the next send (the broker is unreachable now)."""
        self._unsent += self._increments(shared) + self._changes(users)

    async def _send_all(self, messages: list[Message]) -> None:
        producer = self._producer
        if producer is None or not messages:
            return
        futures = [
            await producer.send(topic, value, key=key, partition=p)
            for topic, p, key, value in messages
        ]
        await asyncio.gather(*futures)

    # -- handovers -----------------------------------------------------------

    async def read_handover(self, partition: int) -> Handover:
        """The changelog's state of ``partition``: its latest record and each user's latest."""
        handover = Handover()
        consumer = AIOKafkaConsumer(**self.options, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition(self.changelog, partition)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await end_offsets([tp], self.options))[tp]
            while await consumer.position(tp) < end:
                batches = await consumer.getmany(tp, timeout_ms=POLL_MS)
                for message in batches.get(tp, []):
                    handover.add(message.key, message.value)
        finally:
            await consumer.stop()
        return handover
