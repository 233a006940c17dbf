"""The engine's default model: popularity, the user's stage and what was liked next to their last items.

An item's score for a user (storage.ranking's rule "session") adds three
log-counts, all learned one event at a time:

- how often the item was liked at all (popularity);
- how often it was liked by users at the same stage, i.e. with as many
  positive events behind them (what newcomers like differs from what
  regulars like), weighted by ``stage_weight``;
- how often it was liked within ``context`` events of each of the user's last
  ``context`` items in someone's sequence -- people rate in sessions, so
  "liked next to what you just liked" is the strongest personal signal --
  newest items weighted most (``decay``), in total ``co_weight``.

Co-occurrence is kept as at most ``neighbours`` counters per item
(Space-Saving: a new neighbour replaces the weakest and inherits its count
plus one), so memory is O(items x neighbours) whatever the stream's length,
and the whole state is the rows the store keeps: a reader ranks from a
checkpoint exactly like the engine, and a restored engine continues exactly.

The class keeps the FluRS recommender interface (initialize, register,
update, score, recommend) without importing FluRS.

>>> from types import SimpleNamespace as Entity
>>> model = HybridRecommender(neighbours=4)
>>> model.initialize()
>>> for index in range(3):
...     model.register_item(Entity(index=index))
>>> model.register_user(Entity(index=0))
>>> model.update(Entity(user=Entity(index=0), item=Entity(index=2)))
>>> int(np.argmax(model.scores_all(0)))
2
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from engine.rows import GrowableRows
from storage.ranking import N_STAGES, session_scores, stage_of


class HybridRecommender:
    """Counts of positive events by item, by user stage and by session neighbourhood.

    ``known_items(u)`` returns the user's positive items, oldest first (the
    engine's per-user history): it gives the user's stage and last items.
    """

    score_rule = "session"

    def __init__(
        self,
        context: int = 3,
        decay: float = 0.5,
        co_weight: float = 3.0,
        stage_weight: float = 1.0,
        neighbours: int = 64,
        known_items: Callable[[int], dict] | None = None,
    ):
        if not 1 <= context <= neighbours:
            raise ValueError(f"context ({context}) must be between 1 and neighbours ({neighbours})")
        self.context = context
        self.decay = decay
        self.co_weight = co_weight
        self.stage_weight = stage_weight
        self.neighbours = neighbours
        self._known_items = known_items or (lambda u: {})

    # -- the FluRS interface -------------------------------------------------

    def initialize(self) -> None:
        self.n_user = 0
        self.n_item = 0
        width = N_STAGES + 2 * self.neighbours
        # Rows in the layout of storage.ranking.session_scores; the engine ranks
        # with these very arrays, so a store reader gets the same numbers.
        self._users = GrowableRows(width)
        self._items = GrowableRows(width)
        self._counts = GrowableRows(0)  # positive events per item
        self._slots: list[dict[int, int]] = []  # item -> {neighbour: slot in its row}

    def is_new_user(self, u: int) -> bool:
        return u >= self.n_user

    def is_new_item(self, i: int) -> bool:
        return i >= self.n_item

    def register(self, actor) -> None:
        """Register a flurs User or Item (told apart by class name: FluRS is not imported)."""
        if type(actor).__name__ == "User":
            self.register_user(actor)
        else:
            self.register_item(actor)

    def register_user(self, user) -> None:
        _check_dense(user.index, self.n_user, "user")
        row = np.zeros(self._users.view.shape[1], dtype=np.float32)
        row[0] = self.stage_weight  # stage 0: no events yet
        self._users.append(row)
        self.n_user += 1

    def register_item(self, item) -> None:
        _check_dense(item.index, self.n_item, "item")
        self._items.append(np.zeros(self._items.view.shape[1], dtype=np.float32))
        self._counts.append(0.0)
        self._slots.append({})
        self.n_item += 1

    def update(self, e, batch_train: bool = False) -> None:
        """Learn one positive event: user ``e.user.index`` liked item ``e.item.index``.

        Called before the engine adds the item to the user's history.
        """
        u, i = e.user.index, e.item.index
        known = self._known_items(u)
        recent = self._recent(known, exclude=i)
        self._counts.view[i] += 1.0
        self._items.view[i, stage_of(len(known))] += 1.0
        for j in recent:
            self._add_neighbour(i, j)
            self._add_neighbour(j, i)
        n_events = len(known) + (i not in known)
        self._set_user_row(u, n_events, [i, *recent][: self.context])

    def score(self, user, candidates: np.ndarray) -> np.ndarray:
        """Scores of ``candidates`` for ``user``, higher is better."""
        return self.scores_all(user.index)[candidates]

    def recommend(self, user, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = self.score(user, candidates)
        order = np.argsort(-scores, kind="stable")
        return candidates[order], scores[order]

    # -- learning ------------------------------------------------------------

    def _recent(self, known: dict, exclude: int) -> list[int]:
        """The user's last ``context`` items, newest first, without ``exclude``."""
        newest = itertools.islice(reversed(known), self.context + 1)
        return [j for j in newest if j != exclude][: self.context]

    def _add_neighbour(self, item: int, neighbour: int) -> None:
        """Count one co-occurrence in ``item``'s row (Space-Saving when the row is full)."""
        row, slots = self._items.view[item], self._slots[item]
        ids, counts = row[N_STAGES : N_STAGES + self.neighbours], row[N_STAGES + self.neighbours :]
        slot = slots.get(neighbour)
        if slot is None:
            if len(slots) < self.neighbours:
                slot = len(slots)
            else:
                # Replace the weakest; the newcomer inherits its count, so a
                # neighbour that keeps coming back climbs (Metwally et al. 2005).
                slot = int(np.argmin(counts))
                del slots[int(ids[slot])]
            slots[neighbour] = slot
            ids[slot] = neighbour
        counts[slot] += 1.0

    def _set_user_row(self, u: int, n_events: int, recent: list[int]) -> None:
        row = self._users.view[u]
        row[:] = 0.0
        row[stage_of(n_events)] = self.stage_weight
        weights = self.decay ** np.arange(len(recent))
        first = N_STAGES
        row[first : first + len(recent)] = recent
        row[first + self.neighbours : first + self.neighbours + len(recent)] = (
            self.co_weight * weights / weights.sum()
        )

    # -- state, for checkpoints and the store --------------------------------

    def scores_all(self, u: int) -> np.ndarray:
        """Every item's score for user ``u``: (n_items,) float64, exactly the store's rule."""
        return session_scores(self._users.view[u], self._items.view, self._counts.view)

    def ranking_inputs(self, u: int | None):
        """("session", user row or None, item rows, item counts): live views."""
        user = self._users.view[u] if u is not None else None
        return self.score_rule, user, self._items.view, self._counts.view

    def user_rows(self, users: np.ndarray) -> np.ndarray:
        """Rows of ``users``: (len(users), width) float32, a copy."""
        return self._users.view[np.asarray(users, dtype=np.int64)]

    def export_items(self) -> tuple[np.ndarray, np.ndarray]:
        """(item rows (n_items, width), positive events per item (n_items,)), float32 copies."""
        return self._items.view.copy(), self._counts.view.copy()

    def global_state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, user_rows, item_rows, item_bias, state, histories) -> None:
        """Resume from exported rows: they are the whole state."""
        self._users = GrowableRows.from_array(np.asarray(user_rows, dtype=np.float32))
        self._items = GrowableRows.from_array(np.asarray(item_rows, dtype=np.float32))
        self._counts = GrowableRows.from_array(np.asarray(item_bias, dtype=np.float32))
        self.n_user, self.n_item = len(user_rows), len(item_rows)
        first, m = N_STAGES, self.neighbours
        self._slots = []
        for row in self._items.view:
            used = np.flatnonzero(row[first + m :])
            self._slots.append({int(row[first + slot]): int(slot) for slot in used})


def _check_dense(index: int, expected: int, kind: str) -> None:
    if index != expected:
        raise IndexError(f"{kind} index {index} registered out of order (expected {expected})")
