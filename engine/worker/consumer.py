"""A Faust Kafka consumer that hands fetched messages on in batches, not one task per message.

faust-streaming's Consumer._drain_messages delivers each fetched message
with ``await self.wait_first(callback(message), self.suspend_flow.wait())``:
four tasks and an ``asyncio.wait`` per message, so that a delivery blocked
by a full stream buffer can be abandoned when a rebalance suspends the flow.
On a 2-core machine that bookkeeping is most of Faust's own cost (a no-op
agent tops out near 9,000 events/s). Here the same wait covers a whole
fetched batch: delivery stops at the same points (consumer or fetcher
stopping, the flow suspended), with the same read-offset, gap and commit
bookkeeping per message, at one wait per batch.

Its fetcher hands record batches it cannot decode (a codec whose library is
missing, corrupt bytes) on as rejected messages instead of raising
(engine.worker.batches).
"""

from __future__ import annotations

import asyncio
from typing import cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as KafkaConsumer
from mode import Service, ServiceT

from engine.worker.batches import reject_undecodable_batches

YIELD_EVERY = 100  # messages between yields to the event loop, as Faust does

# How long the broker may hold a fetch that finds nothing new (Faust: 1,500 ms).
# One broker answers for every partition, and aiokafka sends it one fetch at
# a time: while a fetch of an idle partition (Faust's own leader topic) waits
# out this time, the busy partition's next batch cannot be asked for.
FETCH_MAX_WAIT_MS = 100


class ShortPollConsumerThread(AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread: fetches wait FETCH_MAX_WAIT_MS at most, bad batches never raise."""

    def _create_worker_consumer(self, transport):
        reject_undecodable_batches()  # before the consumer's first fetch
        consumer = super()._create_worker_consumer(transport)
        # Faust passes 1,500 ms and offers no setting; aiokafka reads this
        # attribute when it starts its fetcher.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class BatchingConsumer(KafkaConsumer):
    """Faust's aiokafka consumer, delivering each fetched batch under one wait.

    It also goes back to fetching as soon as a full stream buffer drains.
    Faust stops fetching a partition whose buffer is nearly full but goes on
    polling the others, with a timeout of a second; here the other is
    Faust's own leader topic, which never has a message, so each time the
    buffer filled the fetch thread waited the whole second while the agent
    drained the buffer in a fraction of it, then sat idle (half of every
    benchmark run, engine and no-op alike).
    """

    _drained: asyncio.Event | None = None

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return ShortPollConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def on_buffer_drop(self, tp) -> None:
        super().on_buffer_drop(tp)
        if self._drained is not None:
            self._drained.set()

    async def _wait_next_records(self, timeout: float):
        if self._buffered_partitions:
            # A partition waits for its agent: wait until its buffer drains
            # (Faust's on_buffer_drop), not on a poll of the other partitions.
            if self._drained is None:
                self._drained = asyncio.Event()
            self._drained.clear()
            await self.wait_first(self._drained.wait(), timeout=timeout)
        return await super()._wait_next_records(timeout)

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover - loop
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                batch = [pair async for pair in self.getmany(timeout=1.0)]
                # getmany may return at once, many times over: let others run.
                await self.sleep(0)
                if batch and not self.should_stop:
                    await self.wait_first(self._deliver(batch), self.suspend_flow.wait())
                unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, batch: list) -> None:  # pragma: no cover - loop
        """Faust's per-message work from _drain_messages, for a batch of (tp, message)."""
        callback = self.callback
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        suspended = self.suspend_flow.is_set
        for position, (tp, message) in enumerate(batch, start=1):
            if suspended():
                return  # a rebalance began: the rest is fetched again after it
            if position % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            offset = message.offset
            r_offset = get_read_offset(tp)
            if r_offset is None or offset >= r_offset:
                gap = offset - (r_offset or 0)
                if gap > 1 and r_offset and acks_enabled_for(message.topic):
                    await self._add_gap(tp, r_offset + 1, offset)
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                await callback(message)
                set_read_offset(tp, offset)
            else:
                self.log.dev("DROPPED MESSAGE ROFF %r: k=%r", offset, message.key)


class BatchingApp(faust.App):
    """A Faust app whose consumer is a BatchingConsumer (the engine's and the benchmarks')."""

    consumer_class = BatchingConsumer

    def _new_consumer(self):
        return self.consumer_class(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.loop,
        )


def assigned(consumer, topic: str) -> list | None:
    """The partitions (TPs) of ``topic`` assigned to ``consumer``, in order; None between assignments."""
    try:
        assignment = consumer.assignment()
    except Exception:  # no consumer yet, or between assignments
        return None
    return sorted((tp for tp in assignment if tp.topic == topic), key=lambda tp: tp.partition)


def lag_by_partition(consumer, offsets: dict[int, int], topic: str) -> dict[int, int] | None:
    """Per partition of ``topic`` assigned to ``consumer``, messages between the next offset to
    process (``offsets``) and the broker's end; None while the broker has not said some end.
    """
    partitions = assigned(consumer, topic)
    if partitions is None:
        return None
    lag = {}
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None:
            return None
        lag[tp.partition] = max(highwater - offsets.get(tp.partition, 0), 0)
    return lag
