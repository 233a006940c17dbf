"""A processor's partitions: their own counts, what they add to the shared item statistics, handovers.

A deployment's workers split the events topic's partitions. Each partition's
counts and users belong to it and move with it (StreamProcessor.adopt_partition
takes them from the last owner's handover), while the item statistics are
the whole deployment's: every positive event this worker learns is kept for
the other workers (drain_shared), and theirs are added here (apply_shared).

``applied[p]`` is the offset of partition ``p`` below which every positive
event is in this worker's item statistics, whoever learned it. Events below
it that come again (a partition taken over from a worker that stopped after
sharing them but before its handover) only update their user's history: their
item increments are in already, and they are not evaluated, since the model
has learned them.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from engine.sources.events import Interaction
from storage import PartitionState, Totals

# A shared event on the wire: (offset, item id, user's stage, paired items, newest first).
SharedEvent = tuple[int, str, int, list[str]]
# A user's state in a handover: (user id, their items, oldest first).
UserHandover = tuple[str, list[str]]


class PartitionShare:
    """Partition counts, shared item statistics and handovers of engine.processing.processor.StreamProcessor (a mixin of it)."""

    def _init_partitions(self) -> None:
        self.partition_totals: dict[int, Totals] = {}  # of the partitions this worker owns
        self.applied: dict[int, int] = {}  # see the module's docstring
        self.publishing = False  # keep this worker's increments for drain_shared()
        self.shared_applied = 0  # other workers' events added to the item statistics
        self.replayed = 0  # events whose item increments were in already (see the docstring)
        self._outgoing: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        self._queued_offsets: list[int] = []
        self._partition: int | None = None  # of the events queued now
        self._outside = Totals()  # events fed without a partition (offline replays)
        self._counts = self._outside
        self._user_partition = np.full(1024, -1, dtype=np.int32)  # user -> partition last seen

    # -- while processing ----------------------------------------------------

    def _enter_partition(self, partition: int) -> tuple[Totals, int]:
        """Switch to ``partition``'s events: its counts, and the offset replays end at."""
        self._leave_partition()
        self._partition = partition
        counts = self.partition_totals.get(partition)
        if counts is None:
            counts = self.partition_totals[partition] = Totals()
        self._counts = counts
        return counts, self.applied.get(partition, 0)

    def _leave_partition(self) -> None:
        """Learn what is queued; the partition's events up to its offset are in the statistics."""
        self._learn_queued()
        partition = self._partition
        if partition is not None:
            self.applied[partition] = max(
                self.applied.get(partition, 0), self.offsets.get(partition, 0)
            )
        self._partition = None
        self._counts = self._outside

    def _shared_rows(self, n: int) -> np.ndarray | None:
        """Rows for the increments of ``n`` events, where they are kept for the deployment."""
        if self.publishing and self._partition is not None:
            return np.zeros((n, self.recommender.shared_width), dtype=np.int64)
        return None

    def _learned(self, users: np.ndarray, items: np.ndarray, offsets, shared) -> None:
        """Note the partition of users who just learned, and keep the events' increments."""
        partition = self._partition
        if partition is None:
            return
        self._note_partition(users, partition)
        if shared is not None:
            self._outgoing.append(
                (partition, np.asarray(offsets, dtype=np.int64), items.astype(np.int64), shared)
            )

    def observe_in(
        self, partition: int, events: Iterable[tuple[int, Interaction]], evaluate: bool | None
    ) -> None:
        """observe_all() positive ``events`` of ``partition``, given as (offset, event), in order.

        What process_run() does with a partition's positive messages (its
        counts, its replays, its increments kept for drain_shared() while
        publishing), with ``evaluate`` chosen by the caller as observe_all()'s:
        an offline replay that simulates a deployment (engine.evaluation.deployment)
        feeds its protocol's phases this way.
        """
        _, replay_below = self._enter_partition(partition)
        offsets, queue = self.offsets, self._queue
        for offset, event in events:
            offsets[partition] = offset + 1
            if offset < replay_below:
                self._learn_user_side(event)
            else:
                queue(event, evaluate, offset)
        self._leave_partition()

    def _note_partition(self, users: np.ndarray, partition: int) -> None:
        owners = self._user_partition
        if len(owners) < self.recommender.n_users:
            grown = np.full(max(2 * len(owners), self.recommender.n_users), -1, dtype=np.int32)
            grown[: len(owners)] = owners
            self._user_partition = owners = grown
        owners[users] = partition

    def _learn_user_side(self, event: Interaction) -> None:
        """Count a positive event whose item increments are in already; update its user only."""
        self._learn_queued()
        self.totals.positive += 1
        self._counts.positive += 1
        rec = self.recommender
        user, item = rec.register_user(event.user), rec.register_item(event.item)
        self._register_counts()
        self.history.add(user, item, event.timestamp, self.totals.positive)
        rec.adopt_user(user, self.history.items(user))
        self._learned(np.array([user]), np.array([item]), (), None)
        self.replayed += 1

    def _register_counts(self) -> None:
        """Give the baseline a count for every item registered (ids may come ahead: bench model)."""
        popularity, n_items = self.popularity, self.recommender.n_items
        while popularity.n < n_items:
            popularity.register()

    # -- the deployment's item statistics --------------------------------------

    def drain_shared(self) -> dict[int, list[SharedEvent]]:
        """This worker's positive events since the last call, by partition, for the other workers."""
        outgoing, self._outgoing = self._outgoing, []
        ids = self.recommender.item_ids
        by_partition: dict[int, list[SharedEvent]] = {}
        for partition, offsets, items, shared in outgoing:
            events = by_partition.setdefault(partition, [])
            for offset, item, row in zip(
                offsets.tolist(), items.tolist(), shared.tolist(), strict=True
            ):
                events.append((offset, ids[item], row[0], [ids[j] for j in row[2 : 2 + row[1]]]))
        return by_partition

    def apply_shared(self, partition: int, events: list[SharedEvent]) -> int:
        """Add another worker's events of ``partition`` (in offset order); returns how many were new.

        Events below ``applied[partition]`` are in already (this worker's own,
        or shared twice after a takeover) and are skipped: each event counts
        once, whoever shared it and however often.
        """
        start = self.applied.get(partition, 0)
        fresh = [event for event in events if event[0] >= start]
        if not fresh:
            return 0
        self._leave_partition()
        rec = self.recommender
        register, width = rec.register_item, rec.shared_width
        items = np.empty(len(fresh), dtype=np.int64)
        shared = np.zeros((len(fresh), width), dtype=np.int64)
        for e, (_, item, stage, paired) in enumerate(fresh):
            items[e] = register(item)
            paired = paired[: width - 2]
            shared[e, 0], shared[e, 1] = stage, len(paired)
            for t, other in enumerate(paired):
                shared[e, 2 + t] = register(other)
        self._register_counts()
        rec.apply_shared(items, shared, self.popularity)
        self.applied[partition] = fresh[-1][0] + 1
        self.shared_applied += len(fresh)
        return len(fresh)

    # -- handovers -----------------------------------------------------------

    def partition_states(self, lag: dict[int, int] | None = None) -> list[PartitionState]:
        """The owned partitions' offsets and counts now (copies), with their lag where known."""
        self._leave_partition()
        lag = lag or {}
        return [
            PartitionState(
                partition=p,
                offset=self.offsets.get(p, 0),
                totals=Totals(**vars(self.partition_totals.get(p, Totals()))),
                lag=lag.get(p),
            )
            for p in sorted(self.offsets)
        ]

    def changed_users_by_partition(self, users: np.ndarray) -> dict[int, list[UserHandover]]:
        """The histories of ``users`` (indices) in the partitions this worker owns, by partition."""
        rec, owners = self.recommender, self._user_partition
        user_ids, item_ids = rec.user_ids, rec.item_ids
        by_partition: dict[int, list[UserHandover]] = {}
        for user in np.asarray(users, dtype=np.int64).tolist():
            partition = int(owners[user]) if user < len(owners) else -1
            if partition in self.offsets:
                items = [item_ids[i] for i in self.history.items(user).tolist()]
                by_partition.setdefault(partition, []).append((user_ids[user], items))
        return by_partition

    def adopt_partition(
        self, partition: int, offset: int, totals: Totals, users: list[UserHandover]
    ) -> None:
        """Continue ``partition`` from its last owner's handover: its users, counts and offset."""
        self._leave_partition()
        rec = self.recommender
        for user_id, item_ids in users:
            user = rec.register_user(user_id)
            items = [rec.register_item(item) for item in item_ids]
            self._register_counts()
            self.history.replace(user, items)
            rec.adopt_user(user, self.history.items(user))
            self._note_partition(np.array([user]), partition)
        self.offsets[partition] = offset
        self.partition_totals[partition] = Totals(**vars(totals))

    def release_partition(self, partition: int) -> None:
        """Stop owning ``partition``: its offset and counts are its new owner's now."""
        self._leave_partition()
        self.offsets.pop(partition, None)
        self.partition_totals.pop(partition, None)
