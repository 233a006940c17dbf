"""Users' histories in the shared pool behave like one ordered set per user."""

from __future__ import annotations

import numpy as np
import pytest

from engine.models.history import UserHistory


class _Reference:
    """The histories as dicts of ordered sets, with the changes as the pool's log reduces them."""

    def __init__(self, limit: int):
        self.limit = limit
        self.items: dict[int, dict[int, None]] = {}
        self.added: dict[tuple[int, int], tuple[float, int]] = {}
        self.removed: set[tuple[int, int]] = set()

    def add(self, user: int, item: int, time: float, seq: int) -> None:
        items = self.items.setdefault(user, {})
        items.pop(item, None)
        items[item] = None
        self.added[(user, item)] = (time, seq)
        self.removed.discard((user, item))
        if len(items) > self.limit:
            oldest = next(iter(items))
            del items[oldest]
            self.removed.add((user, oldest))
            self.added.pop((user, oldest), None)

    def drain(self):
        added = sorted((u, i, t, s) for (u, i), (t, s) in self.added.items())
        removed = sorted(self.removed)
        self.added, self.removed = {}, set()
        return added, removed


@pytest.mark.parametrize("limit", [1, 3, 7, 500])
def test_random_adds_keep_order_bound_and_changes_like_ordered_sets(limit):
    rng = np.random.default_rng(limit)
    history, reference = UserHistory(limit), _Reference(limit)
    seq = 0
    for round_ in range(6):
        # Few items per user, so re-interactions and evictions are common;
        # thousands of users, so the pool grows several times.
        for user, item in zip(
            rng.integers(0, 3000, 4000).tolist(), rng.integers(0, 12, 4000).tolist(), strict=True
        ):
            seq += 1
            history.add(user, item, float(seq) / 2, seq)
            reference.add(user, item, float(seq) / 2, seq)
        added, removed = history.drain_changes()
        assert (sorted(added), sorted(removed)) == reference.drain(), f"round {round_}"
        touched = history.drain_touched()
        assert history.changed_users == 0
        assert len(touched) and np.all(np.diff(touched) > 0)
    for user in range(3001):
        assert history.items(user).tolist() == list(reference.items.get(user, {}))


def test_only_users_added_since_the_last_drain_are_touched():
    history = UserHistory(5)
    history.add(4, 1, 0.0, 1)
    history.add(2, 1, 0.0, 2)
    history.add(4, 2, 0.0, 3)
    assert history.changed_users == 2
    assert history.drain_touched().tolist() == [2, 4]
    history.add(7, 3, 0.0, 4)
    assert history.drain_touched().tolist() == [7]
    assert history.items(9).tolist() == [] and history.items(10_000).tolist() == []


def test_restored_histories_keep_their_items_and_grow_from_there():
    history = UserHistory.restore(3, {0: [5, 6], 2: [1, 2, 3, 4], 3: []})
    assert history.items(0).tolist() == [5, 6]
    assert history.items(2).tolist() == [2, 3, 4]  # the newest within the bound
    assert history.drain_changes() == ([], [])
    history.add(0, 7, 1.0, 1)
    history.add(0, 8, 2.0, 2)
    history.add(3, 9, 3.0, 3)
    history.add(5, 9, 4.0, 4)  # a user the checkpoint did not have
    assert history.items(0).tolist() == [6, 7, 8]
    assert history.items(2).tolist() == [2, 3, 4]
    assert history.items(3).tolist() == [9] and history.items(5).tolist() == [9]
    added, removed = history.drain_changes()
    assert added == [(0, 7, 1.0, 1), (0, 8, 2.0, 2), (3, 9, 3.0, 3), (5, 9, 4.0, 4)]
    assert removed == [(0, 5)]
