"""The worker's live state: the processor and its checkpointer, created once per process."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Callable

from engine.kernels import warm_up
from engine.models.registry import DEFAULT_PARAMS, Recommender
from engine.processing.processor import ProcessorConfig, StreamProcessor
from engine.settings import Settings, SettingsError
from engine.sources.kafka import client_options
from engine.worker.broker_watch import BrokerWatch
from engine.worker.checkpointer import Checkpointer, CheckpointFailed
from engine.worker.clicks import ClickLog
from engine.worker.dead_letters import DeadLetters
from engine.worker.health import not_ready_reasons
from engine.worker.live import LiveService
from engine.worker.sharing import Sharing
from storage import CheckpointWrite, IntervalMetrics

log = logging.getLogger(__name__)

# Seconds a checkpoint waits for Kafka to take its increments and handover; what
# it does not take goes again with the next one (a broker outage must not stop
# checkpoints to the store).
SEND_S = 5.0


def check_model(settings: Settings) -> None:
    """Build the configured model once, empty; SettingsError naming RECO_MODEL_PARAMS if it fails.

    A worker would otherwise find out only once Faust has started, with a
    traceback: docs/configuration.md's own example, {"k": 20, "learn_rate": 0.03}, is
    mf's and does not fit the default model.
    """
    model, params = settings.model, settings.model_params
    try:
        Recommender(model, params)
    except (TypeError, ValueError) as exc:
        takes = ", ".join(DEFAULT_PARAMS[model]) or "none"
        unknown = sorted(set(params) - set(DEFAULT_PARAMS[model]))
        why = f"{model} takes no {', '.join(unknown)}" if unknown else str(exc)
        raise SettingsError(
            f"RECO_MODEL_PARAMS={json.dumps(params)} is not valid: {why} "
            f"(its parameters: {takes}; RECO_MODEL chooses the model)"
        ) from None


class EngineRuntime:
    """The processor restored from the store's latest checkpoint, and the way back to it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        warm_up()  # compiled loops load (or compile) now, not on the first events
        self.processor = StreamProcessor(
            ProcessorConfig(
                model=settings.model,
                model_params=settings.model_params,
                min_rating=settings.min_rating,
                eval_fraction=settings.eval_fraction,
                history_limit=settings.history_limit,
                panel_size=settings.panel_size,
                max_message_bytes=settings.max_message_bytes,
                encoding=settings.encoding,
                seed=settings.seed,
                topic=settings.topic,
            )
        )
        self.checkpointer = Checkpointer(
            settings.db,
            keep_snapshots=settings.keep_snapshots,
            metrics_retention_s=settings.metrics_retention,
            keep_rejected=settings.keep_rejected,
        )
        self.broker = BrokerWatch(settings.broker)
        self.redelivered = 0  # messages seen again after a seek back; not counted twice
        self._held: list[tuple[bytes | None, int, int]] = []  # see hold()
        self.last_checkpoint_time: float | None = None  # Unix seconds of the last write
        # Unix seconds of the first of the failed writes since the last one that succeeded.
        self.checkpoint_failing_since: float | None = None
        self.checkpoints_written = 0  # by this process
        self.checkpoint_failures = 0
        self.last_interval: IntervalMetrics | None = None  # of the last checkpoint written
        # Called with (seconds, written) after each checkpoint attempt (engine.worker.metrics).
        self.checkpoint_listeners: list[Callable[[float, bool], None]] = []
        # The deployment's topics (engine.worker.sharing), once the broker is there.
        self.sharing: Sharing | None = None
        self._sharing_task: asyncio.Future | None = None
        self.worker = f"{socket.gethostname()}:{settings.web_port}"
        self._shared_read: dict[int, int] = {}  # the store's positions in <group>-<topic>-items
        self._assigned: set[int] = set()  # partitions of the last assignment
        self._checkpointing = asyncio.Lock()  # one checkpoint at a time, sent in order
        latest = self.checkpointer.open()
        if latest is None:
            log.info(
                "new store at %s; starting from the beginning of %s", settings.db, settings.topic
            )
        else:
            checkpoint, state = latest
            if checkpoint.topic != settings.topic:
                log.warning(
                    "the store's checkpoint is for topic %s, not %s; its offsets will not be used",
                    checkpoint.topic,
                    settings.topic,
                )
            self.processor.restore(checkpoint, state)
            if checkpoint.topic != settings.topic:
                self.processor.offsets = {}
                self.processor.partition_totals = {}
            elif checkpoint.shared:
                self._shared_read = {int(p): o for p, o in checkpoint.shared["read"].items()}
            log.info(
                "resuming from checkpoint %d of %s: %d events, %d users, %d items, offsets %s",
                checkpoint.id,
                settings.db,
                checkpoint.totals.received,
                checkpoint.users,
                checkpoint.items,
                checkpoint.offsets,
            )
            self.last_checkpoint_time = checkpoint.time
        # The live API's side: it ranks from this very processor and sees every event.
        self.live = LiveService(
            self.processor, ClickLog(settings.click_window), settings.ab_baseline_fraction
        )
        self.processor.add_listener(self.live.clicks.observe)
        self.dead_letters: DeadLetters | None = None
        if settings.dead_letter_topic:
            self.dead_letters = DeadLetters(
                settings.dead_letter_topic,
                settings.topic,
                settings.broker,
                client_options(settings),
                replication=settings.replication,
            )
            self.processor.add_rejection_listener(self.dead_letters.put)
        names, self._names_cursor = self.checkpointer.item_names_now()
        self.live.add_names(names)

    async def share(self) -> None:
        """Connect to the deployment's topics: send increments and handovers, add the others'."""
        sharing = Sharing(self.settings, self.processor, self.worker)
        sharing.read = dict(self._shared_read)
        await sharing.start()
        self.processor.publishing = True
        self.sharing = sharing
        # Reading starts now, not with Faust's tasks (those wait for the first
        # assignment, whose handovers wait for these increments).
        self._sharing_task = asyncio.ensure_future(sharing.run())

    async def share_increments(self) -> None:
        """Send the item increments learned since the last send (no handover)."""
        if self.sharing is None or self.checkpointer.closed:
            return
        async with self._checkpointing:
            self.process_held()
            shared = self.processor.drain_shared()
            if shared:
                await self._send(shared, {}, [])

    async def take_partitions(self, assigned: list[int]) -> None:
        """Own ``assigned`` from now on: let the others go, continue new ones from their handover.

        A partition new to this worker continues from the changelog when
        that is further than this store (another worker had it meanwhile),
        once the increments its handover relies on are added.
        """
        processor = self.processor
        self.process_held()
        for partition in list(processor.offsets):
            if partition not in assigned:
                processor.release_partition(partition)
        new = [p for p in assigned if p not in self._assigned]
        self._assigned = set(assigned)
        sharing = self.sharing
        if sharing is None:
            return
        for partition in new:
            if not await sharing.caught_up(partition):
                log.warning(
                    "partition %d: the other workers' increments are still arriving; continuing",
                    partition,
                )
            handover = await sharing.read_handover(partition)
            if handover.offset is None or handover.offset <= processor.offsets.get(partition, -1):
                continue
            processor.adopt_partition(
                partition, handover.offset, handover.totals, handover.user_list()
            )
            log.info(
                "partition %d: continuing from %s's handover at offset %d (%d users)",
                partition,
                handover.worker,
                handover.offset,
                len(handover.users),
            )

    def health(self, partitions: list[int]) -> dict:
        """The worker's state for GET /health, given the partitions assigned to it.

        ``ok`` is whether it is ready (engine.worker.health), with the ``reasons``
        when it is not; times are Unix seconds.
        """
        processor = self.processor
        clicks = self.live.clicks
        reasons = not_ready_reasons(
            self.broker.stalled_since, self.checkpoint_failing_since, partitions
        )
        return {
            "ok": not reasons,
            "reasons": reasons,
            "partitions": partitions,
            "model": processor.recommender.model,
            "events": processor.totals.received,
            "users": processor.recommender.n_users,
            "items": processor.recommender.n_items,
            "last_event_time": clicks.clock.latest,
            "last_checkpoint_time": self.last_checkpoint_time,
            "impressions": clicks.impressions,
            "clicks": clicks.clicks,
            "impressions_held": len(clicks),
            **self.live.stats.as_dict(),
        }

    def hold(self, value: bytes | None, partition: int, offset: int) -> int:
        """Keep a message for process_held(); returns how many are held now.

        The agent hands messages over as Faust delivers them, one by one,
        and has them processed in runs: the engine's work per message then
        runs back to back instead of between Faust's own, which made the
        same work cost 54 us of CPU per message instead of about 40 (ML-100k
        replay): its data stays in the caches.
        Held messages are not in the model, its counts or its offsets yet,
        so a checkpoint taken meanwhile stays consistent; checkpoint()
        processes them first anyway.
        """
        held = self._held
        held.append((value, partition, offset))
        return len(held)

    def process_held(self) -> None:
        """process() the held messages, in the order they came, as one run."""
        # Taken first: should processing ever raise (it does not for bad input),
        # the rest of the run is dropped, never processed twice.
        held, self._held = self._held, []
        if held:
            self.processor.process_run(self._new(held))

    def process(self, value: bytes | None, partition: int, offset: int) -> None:
        """Count and learn one message, unless the model already holds it."""
        self.processor.process_run(self._new(((value, partition, offset),)))

    def _new(self, messages):
        """The messages the model does not hold yet, in order.

        Offsets below the next expected one come again after a seek back or a
        rebalance; they are in the model already, so they are skipped: this is
        what keeps a redelivery from counting twice.
        """
        expected = self.processor.offsets
        for value, partition, offset in messages:
            next_offset = expected.get(partition)
            if next_offset is not None:
                if offset < next_offset:
                    self.redelivered += 1
                    continue
                if offset > next_offset:
                    log.warning(
                        "partition %d: offsets %d to %d never arrived (deleted by the broker's "
                        "retention?); continuing at %d",
                        partition,
                        next_offset,
                        offset - 1,
                        offset,
                    )
            yield value, partition, offset

    def resume_offsets(self) -> dict[int, int]:
        """Partition -> next offset to consume, as far as this process has got."""
        return dict(self.processor.offsets)

    def resume_position(self, partition: int, earliest: int, end: int) -> int:
        """Where to start ``partition``, given the offsets the broker holds (earliest .. end-1).

        Normally the checkpoint's offset. A checkpoint offset beyond the end
        means the topic was deleted and created again (the memory-only broker
        restarted): its offsets count from 0 again, so the engine re-bases to
        the new start instead of waiting for offsets that will hold other
        events. One below the earliest means the events in between are gone.
        """
        stored = self.processor.offsets.get(partition)
        if stored is None:
            return earliest
        if stored > end:
            log.warning(
                "partition %d of %s ends at offset %d, before the checkpoint's %d: the topic "
                "was re-created (did the broker restart?). Events before the restart are gone "
                "from the broker; counting the new ones from offset %d, the model stays",
                partition,
                self.settings.topic,
                end,
                stored,
                earliest,
            )
            self.processor.offsets[partition] = earliest
            return earliest
        if stored < earliest:
            log.warning(
                "partition %d of %s: offsets %d to %d are gone from the broker (retention); "
                "resuming at %d",
                partition,
                self.settings.topic,
                stored,
                earliest - 1,
                earliest,
            )
            self.processor.offsets[partition] = earliest
            return earliest
        return stored

    async def checkpoint(self, lag: dict[int, int] | None = None) -> None:
        """Write a checkpoint; a failed write is logged and retried with the next one.

        ``lag``: messages behind the broker's end per owned partition, where known.
        """
        if self.checkpointer.closed:
            return  # the worker stopped: its final checkpoint holds everything
        started = time.perf_counter()
        self.process_held()
        if self.processor.received_since_checkpoint == 0 or self.broker.stalled_since is not None:
            # Events flowing prove the broker is there; probe only when they do not.
            await self.broker.check()
        else:
            self.broker.record(True)
        # One checkpoint at a time from the snapshot on, so that Kafka gets
        # handovers in order (a newer one never lands before an older one).
        async with self._checkpointing:
            await self._checkpoint(lag, started)

    async def _checkpoint(self, lag: dict[int, int] | None, started: float) -> None:
        # From the snapshot until its write is queued nothing else runs (no await):
        # a stop that came in between would write the final checkpoint first and
        # then drop this one, with changes the final one does not repeat.
        if self.checkpointer.closed:
            return
        write, outbox = self._snapshot(lag)  # with what arrived during the probe
        stored = self.checkpointer.submit(write)
        if outbox is not None:
            await self._send(*outbox, write.partitions)
        try:
            checkpoint_id = await stored
        except CheckpointFailed:
            raise
        except Exception:
            # The checkpointer logged it and keeps the write for the next attempt.
            if self.checkpoint_failing_since is None:
                self.checkpoint_failing_since = write.time
            self.checkpoint_failures += 1
            self._checkpointed(time.perf_counter() - started, False)
            return
        self.last_checkpoint_time = write.time
        self.checkpoint_failing_since = None
        self.checkpoints_written += 1
        self.last_interval = write.interval
        self._checkpointed(time.perf_counter() - started, True)
        if self.checkpointer.closed:
            return  # the worker stopped meanwhile; its final checkpoint came after this one
        # Producers record item names at any time; pick up the new ones for the API.
        names, self._names_cursor = await self.checkpointer.item_names(self._names_cursor)
        self.live.add_names(names)
        log.info(
            "checkpoint %d: %d events (+%d), %d users, %d items, recall@10 %s vs "
            "popular %s%s, %.0f ms",
            checkpoint_id,
            write.totals.received,
            write.interval.received,
            write.n_users,
            write.n_items,
            _fmt(write.totals.model_hits, write.totals.evaluated),
            _fmt(write.totals.popular_hits, write.totals.evaluated),
            ", broker unreachable" if self.broker.stalled_since is not None else "",
            1000 * (time.perf_counter() - started),
        )

    def _checkpointed(self, seconds: float, written: bool) -> None:
        for listener in self.checkpoint_listeners:
            listener(seconds, written)

    def _snapshot(self, lag: dict[int, int] | None = None) -> tuple[CheckpointWrite, tuple | None]:
        """The processor's checkpoint (held messages first), the online loop's, the broker's,
        and what goes to the deployment's topics with it (None for a worker not sharing)."""
        self.process_held()
        processor = self.processor
        partitions = processor.partition_states(lag)
        write = processor.checkpoint(lag=None if lag is None else sum(lag.values()))
        write.partitions = partitions
        write.worker = self.worker
        outbox = None
        if self.sharing is not None:
            write.shared = {"read": dict(self.sharing.read), "applied": dict(processor.applied)}
            outbox = (
                processor.drain_shared(),
                processor.changed_users_by_partition(write.touched_users),
            )
        write.online = self.live.clicks.drain()
        write.broker_connected = self.broker.connected
        write.stalled_since = self.broker.stalled_since
        return write, outbox

    async def _send(self, shared: dict, users: dict, states: list) -> None:
        """Send increments, users and partition records to the deployment's topics (at most
        SEND_S seconds); while the broker is unreachable, keep them for the next send."""
        if self.broker.stalled_since is not None:
            self.sharing.defer(shared, users)
            return
        try:
            await asyncio.wait_for(self.sharing.send(shared, users, states), SEND_S)
        except Exception as exc:  # the timeout included: the next send takes them again
            log.warning("could not send increments and handovers to Kafka (%r); retrying", exc)

    async def final_checkpoint(self, timeout: float) -> None:
        """The last checkpoint, to the store, then (for at most ``timeout`` s) to Kafka; close."""
        lock, acquired = self._checkpointing, False
        try:
            acquired = await asyncio.wait_for(lock.acquire(), timeout)
        except TimeoutError:
            log.warning("a checkpoint still waits for Kafka; writing the final one anyway")
        try:
            write, outbox = self._snapshot()
            self._write_final(write)
            if self.sharing is not None:
                try:
                    await asyncio.wait_for(self._send(*outbox, write.partitions), timeout)
                except TimeoutError:
                    log.warning("the handover did not reach Kafka in %.0f s", timeout)
                self._sharing_task.cancel()
                if self.broker.stalled_since is None:  # closing waits for a broker that is gone
                    try:
                        await asyncio.wait_for(self.sharing.stop(), timeout)
                    except TimeoutError:
                        log.warning("the Kafka clients of the deployment's topics did not close")
        finally:
            if acquired:
                lock.release()  # a checkpoint waiting for it finds the store closed

    def _write_final(self, write: CheckpointWrite) -> None:
        try:
            checkpoint_id = self.checkpointer.write_now(write)
        except Exception as exc:
            log.error("final checkpoint not written (%s); a restart resumes from the last one", exc)
        else:
            log.info(
                "final checkpoint %d: %d events in total", checkpoint_id, write.totals.received
            )
        self.checkpointer.close()


def _fmt(hits: int, total: int) -> str:
    return f"{hits / total:.3f}" if total else "n/a"
