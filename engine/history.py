"""Each user's recent positive items, bounded, with the changes since the last checkpoint."""

from __future__ import annotations


class UserHistory:
    """Per-user ordered sets of item indices, oldest first, at most ``limit`` each."""

    def __init__(self, limit: int):
        self.limit = limit
        self._items: dict[int, dict[int, None]] = {}
        self._added: dict[tuple[int, int], tuple[float, int]] = {}
        self._removed: set[tuple[int, int]] = set()

    def add(self, user: int, item: int, time: float, seq: int) -> None:
        """Record that ``user`` interacted with ``item``; re-interaction makes it newest."""
        items = self._items.setdefault(user, {})
        items.pop(item, None)
        items[item] = None
        self._added[(user, item)] = (time, seq)
        self._removed.discard((user, item))
        if len(items) > self.limit:
            oldest = next(iter(items))
            del items[oldest]
            self._removed.add((user, oldest))
            self._added.pop((user, oldest), None)

    def items(self, user: int) -> dict[int, None]:
        """The user's items (a dict used as an ordered set; do not modify)."""
        return self._items.get(user, _EMPTY)

    def drain_changes(self) -> tuple[list[tuple[int, int, float, int]], list[tuple[int, int]]]:
        """Rows added and removed since the last call, for an incremental checkpoint."""
        added = [(u, i, t, s) for (u, i), (t, s) in self._added.items()]
        removed = list(self._removed)
        self._added, self._removed = {}, set()
        return added, removed

    @classmethod
    def restore(cls, limit: int, histories: dict[int, list[int]]) -> UserHistory:
        history = cls(limit)
        for user, items in histories.items():
            history._items[user] = dict.fromkeys(items[-limit:])
        return history


_EMPTY: dict[int, None] = {}
