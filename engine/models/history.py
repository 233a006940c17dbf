"""Each user's recent positive items, bounded, with the changes since the last checkpoint.

Kept in flat arrays rather than a dict per user, so that compiled code
(engine.kernels.session_run) reads and extends them with no Python per
event, and a million users cost a few arrays instead of a million dicts.
Each user owns a block of a shared pool of item indices, oldest first; a
full block moves to the pool's end at twice the size (at most ``limit``),
so adding is amortised O(1) and the pool holds at most about twice the
items. Every add and eviction is appended to a log, which a checkpoint
reduces to the rows added and removed since the last one.
"""

from __future__ import annotations

import numpy as np

from engine.kernels import history_add, history_room
from engine.models.growable import grown

_USERS = 1024  # initial per-user capacity
_POOL = 4096  # initial pool capacity
_LOG = 4096  # initial log capacity
_PER_USER = ("starts", "lengths", "capacities", "touched")
_LOG_ARRAYS = ("log_users", "log_items", "log_times", "log_seqs", "log_added")


class UserHistory:
    """Per-user ordered sets of item indices, oldest first, at most ``limit`` each."""

    def __init__(self, limit: int):
        self.limit = limit
        # Per user: where the block starts in the pool, items in it, block size,
        # and 1 if the user's history changed since the last drain.
        self.starts = np.zeros(_USERS, dtype=np.int64)
        self.lengths = np.zeros(_USERS, dtype=np.int32)
        self.capacities = np.zeros(_USERS, dtype=np.int32)
        self.touched = np.zeros(_USERS, dtype=np.uint8)
        self.pool = np.zeros(_POOL, dtype=np.int32)
        # [pool slots used, log entries, users touched since the last drain]
        self.state = np.zeros(3, dtype=np.int64)
        # The log: per entry the user, the item, and for adds (added = 1) the
        # event's time and sequence number; evictions have added = 0.
        self.log_users = np.zeros(_LOG, dtype=np.int64)
        self.log_items = np.zeros(_LOG, dtype=np.int32)
        self.log_times = np.zeros(_LOG, dtype=np.float64)
        self.log_seqs = np.zeros(_LOG, dtype=np.int64)
        self.log_added = np.zeros(_LOG, dtype=np.uint8)

    def reserve(self, n_users: int, events: int) -> None:
        """Make room for users 0 .. n_users - 1 and the log entries of ``events`` adds."""
        users = len(self.starts)
        if n_users > users:
            size = max(n_users, 2 * users)
            for name in _PER_USER:
                setattr(self, name, grown(getattr(self, name), size, users))
        entries = int(self.state[1])
        needed = entries + 2 * events  # an add and an eviction each
        if needed > len(self.log_users):
            size = max(needed, 2 * len(self.log_users))
            for name in _LOG_ARRAYS:
                setattr(self, name, grown(getattr(self, name), size, entries))

    def grow_pool(self) -> None:
        """Double the pool: called when history_room() finds no room for a moving block."""
        self.pool = grown(self.pool, 2 * len(self.pool) + 2 * self.limit, int(self.state[0]))

    def add(self, user: int, item: int, time: float, seq: int) -> None:
        """Record that ``user`` interacted with ``item``; re-interaction makes it newest."""
        self.reserve(user + 1, 1)
        while (
            history_room(
                user,
                item,
                self.limit,
                self.pool,
                self.starts,
                self.lengths,
                self.capacities,
                self.state,
            )
            < 0
        ):
            self.grow_pool()
        history_add(user, item, time, seq, *self.kernel_arrays())

    def replace(self, user: int, items: list[int], time: float = 0.0, seq: int = 0) -> None:
        """Make ``items`` (oldest first) ``user``'s whole history, logging what leaves and comes.

        A user whose partition moved to this worker takes the history its
        last owner checkpointed; ``time`` and ``seq`` stand for the events'
        own, which the handover does not carry.
        """
        self.reserve(user + 1, len(items) + int(self.lengths[user]))
        start = self.starts[user]
        old = self.pool[start : start + self.lengths[user]].tolist()
        entry = int(self.state[1])
        for item in old:  # logged as evictions: the store drops these rows
            self.log_users[entry], self.log_items[entry], self.log_added[entry] = user, item, 0
            entry += 1
        self.state[1] = entry
        self.lengths[user] = 0
        for item in items[-self.limit :]:
            self.add(user, item, time, seq)
        if not items and not self.touched[user]:
            self.touched[user] = 1
            self.state[2] += 1

    def kernel_arrays(self) -> tuple:
        """The arguments history_add() takes after (user, item, time, seq), in its order."""
        return (
            self.limit,
            self.pool,
            self.starts,
            self.lengths,
            self.capacities,
            self.touched,
            self.state,
            self.log_users,
            self.log_items,
            self.log_times,
            self.log_seqs,
            self.log_added,
        )

    def items(self, user: int) -> np.ndarray:
        """The user's items, oldest first: (n,) int64, a copy."""
        if user >= len(self.starts):
            return np.zeros(0, dtype=np.int64)
        start = self.starts[user]
        return self.pool[start : start + self.lengths[user]].astype(np.int64)

    @property
    def changed_users(self) -> int:
        """Users whose history changed since the last drain_touched()."""
        return int(self.state[2])

    def drain_touched(self) -> np.ndarray:
        """Users whose history changed since the last call: sorted (m,) int64."""
        users = np.flatnonzero(self.touched).astype(np.int64)
        self.touched[users] = 0
        self.state[2] = 0
        return users

    def drain_changes(self) -> tuple[list[tuple[int, int, float, int]], list[tuple[int, int]]]:
        """Rows added and removed since the last call, for an incremental checkpoint.

        A (user, item) pair's last change decides: added (with the time and
        sequence number of its latest add) or removed.
        """
        entries = int(self.state[1])
        self.state[1] = 0
        if not entries:
            return [], []
        users = self.log_users[:entries]
        items = self.log_items[:entries].astype(np.int64)
        keys = users * (int(items.max()) + 1) + items
        # np.unique keeps each key's first position: on the reversed log, its last change.
        _, first = np.unique(keys[::-1], return_index=True)
        last = entries - 1 - first  # sorted by (user, item)
        added = last[self.log_added[last] == 1]
        removed = last[self.log_added[last] == 0]
        return (
            list(
                zip(
                    users[added].tolist(),
                    items[added].tolist(),
                    self.log_times[added].tolist(),
                    self.log_seqs[added].tolist(),
                    strict=True,
                )
            ),
            list(zip(users[removed].tolist(), items[removed].tolist(), strict=True)),
        )

    @classmethod
    def restore(cls, limit: int, histories: dict[int, list[int]]) -> UserHistory:
        """The histories of a checkpoint (user -> items, oldest first), with no changes logged."""
        history = cls(limit)
        if not histories:
            return history
        history.reserve(max(histories) + 1, 0)
        kept = {user: items[-limit:] for user, items in histories.items()}
        total = sum(len(items) for items in kept.values())
        history.pool = np.zeros(max(2 * total, _POOL), dtype=np.int32)
        used = 0
        for user, items in kept.items():
            history.starts[user] = used
            history.lengths[user] = history.capacities[user] = len(items)
            history.pool[used : used + len(items)] = items
            used += len(items)
        history.state[0] = used
        return history
