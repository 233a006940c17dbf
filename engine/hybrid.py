"""The engine's default model: popularity, the user's stage, and items liked next to the user's.

An item's score for a user (storage.ranking's rule "session") adds
log-counts, all learned one event at a time:

- how often the item was liked at all (popularity);
- how often it was liked by users at the same stage, i.e. with as many
  positive events behind them -- what newcomers like differs from what
  regulars like -- weighted by ``stage_weight``;
- how often it was liked within ``window`` events of each of the user's
  items in someone's sequence. People rate in sessions, so the user's last
  ``context`` items count most (``co_weight``, newest first by ``decay``);
  the last ``profile`` items count too, evenly (``profile_weight``), like an
  item-to-item neighbourhood over the user's taste.

Co-occurrence is kept as at most ``neighbours`` counters per item
(Space-Saving: a new neighbour replaces the weakest and inherits its count
plus one), so memory is O(items x neighbours) whatever the stream's length,
and the whole state is the rows the store keeps: a reader ranks from a
checkpoint exactly like the engine, and a restored engine continues exactly.

The class keeps the FluRS recommender interface (initialize, register,
update, score, recommend) without importing FluRS.

>>> from types import SimpleNamespace as Entity
>>> model = HybridRecommender(neighbours=4, profile=4)
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
import math
from collections.abc import Callable

import numpy as np

from engine.rows import GrowableRows
from storage.ranking import N_STAGES, stage_of


class HybridRecommender:
    """Counts of positive events by item, by user stage and by sequence neighbourhood.

    ``known_items(u)`` returns the user's positive items, oldest first (the
    engine's per-user history): it gives the user's stage and items.
    """

    score_rule = "session"

    def __init__(
        self,
        window: int = 3,
        context: int = 3,
        decay: float = 0.5,
        co_weight: float = 3.0,
        profile: int = 20,
        profile_weight: float = 8.0,
        stage_weight: float = 0.5,
        neighbours: int = 128,
        known_items: Callable[[int], dict] | None = None,
    ):
        if not (1 <= context <= neighbours and 0 <= profile <= neighbours and window >= 1):
            raise ValueError(
                f"context ({context}) and profile ({profile}) must fit in neighbours "
                f"({neighbours}), and window ({window}) be at least 1"
            )
        self.window = window
        self.context = context
        self.decay = decay
        self.co_weight = co_weight
        self.profile = profile
        self.profile_weight = profile_weight
        self.stage_weight = stage_weight
        self.neighbours = neighbours
        self._known_items = known_items or (lambda u: {})
        # Weight of the user's n-th newest item, for each number of items the user has.
        self._weights = [self._item_weights(n) for n in range(max(context, profile) + 1)]

    def _item_weights(self, n: int) -> np.ndarray:
        """(n,) float32 weights of a user's n newest items, newest first."""
        weights = np.zeros(n)
        recent = min(n, self.context)
        if recent:
            decayed = self.decay ** np.arange(recent)
            weights[:recent] = self.co_weight * decayed / decayed.sum()
        profile = min(n, self.profile)
        if profile:
            weights[:profile] += self.profile_weight / profile
        return weights.astype(np.float32)

    # -- the FluRS interface -------------------------------------------------

    def initialize(self) -> None:
        self.n_user = 0
        self.n_item = 0
        m = self.neighbours
        # User rows are kept in the layout of storage.ranking.session_scores.
        self._users = GrowableRows(N_STAGES + 2 * m)
        # The same rows unpacked for ranking: (stage, its weight, item indices, weights).
        self._unpacked: list[tuple[int, float, np.ndarray, np.ndarray]] = []
        self._counts = GrowableRows(0)  # positive events per item
        self._stages = [GrowableRows(0) for _ in range(N_STAGES)]  # ... per user stage
        self._neighbour_ids = GrowableRows(m, dtype=np.int64)
        self._neighbour_counts = GrowableRows(m)
        self._slots: list[dict[int, int]] = []  # item -> {neighbour: slot}
        # log(1 + count) of every counter, kept up to date per event so that
        # ranking takes no logarithm; the store computes the same values.
        self._log_counts = GrowableRows(0, dtype=np.float64)
        self._log_stages = [GrowableRows(0, dtype=np.float64) for _ in range(N_STAGES)]
        self._log_neighbours = GrowableRows(m, dtype=np.float64)

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
        self._users.append(0.0)
        self._unpacked.append(_NO_CONTEXT)
        self._set_user_row(user.index, 0, [])
        self.n_user += 1

    def register_item(self, item) -> None:
        _check_dense(item.index, self.n_item, "item")
        for rows in (self._counts, self._neighbour_ids, self._neighbour_counts, *self._stages):
            rows.append(0)
        for rows in (self._log_counts, self._log_neighbours, *self._log_stages):
            rows.append(0.0)
        self._slots.append({})
        self.n_item += 1

    def update(self, e, batch_train: bool = False) -> None:
        """Learn one positive event: user ``e.user.index`` liked item ``e.item.index``.

        Called before the engine adds the item to the user's history.
        """
        u, i = e.user.index, e.item.index
        known = self._known_items(u)
        stage = stage_of(len(known))
        counts, stages = self._counts.view, self._stages[stage].view
        counts[i] += 1.0
        stages[i] += 1.0
        # math.log1p and numpy's agree to the bit (both are the C library's).
        self._log_counts.view[i] = math.log1p(counts[i])
        self._log_stages[stage].view[i] = math.log1p(stages[i])
        newest = self._newest(known, exclude=i, n=max(self.window, self.context, self.profile))
        ids, neighbour_counts = self._neighbour_ids.view, self._neighbour_counts.view
        logs = self._log_neighbours.view
        for j in newest[: self.window]:
            self._add_neighbour(i, j, ids, neighbour_counts, logs)
            self._add_neighbour(j, i, ids, neighbour_counts, logs)
        n_events = len(known) + (i not in known)
        self._set_user_row(u, n_events, [i, *newest])

    def score(self, user, candidates: np.ndarray) -> np.ndarray:
        """Scores of ``candidates`` for ``user``, higher is better."""
        return self.scores_all(user.index)[candidates]

    def recommend(self, user, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = self.score(user, candidates)
        order = np.argsort(-scores, kind="stable")
        return candidates[order], scores[order]

    # -- learning ------------------------------------------------------------

    @staticmethod
    def _newest(known: dict, exclude: int, n: int) -> list[int]:
        """The user's ``n`` newest items, newest first, without ``exclude``."""
        return [j for j in itertools.islice(reversed(known), n + 1) if j != exclude][:n]

    def _add_neighbour(
        self,
        item: int,
        neighbour: int,
        ids: np.ndarray,
        counts: np.ndarray,
        logs: np.ndarray,
    ) -> None:
        """Count one co-occurrence in ``item``'s row (Space-Saving when the row is full).

        ``ids``, ``counts`` and ``logs`` are the live neighbour views, passed in
        because this runs several times per event.
        """
        slots = self._slots[item]
        slot = slots.get(neighbour)
        if slot is None:
            if len(slots) < self.neighbours:
                slot = len(slots)
            else:
                # Replace the weakest; the newcomer inherits its count, so a
                # neighbour that keeps coming back climbs (Metwally et al. 2005).
                slot = int(np.argmin(counts[item]))
                del slots[int(ids[item, slot])]
            slots[neighbour] = slot
            ids[item, slot] = neighbour
        count = counts[item, slot] + 1.0
        counts[item, slot] = count
        logs[item, slot] = math.log1p(count)

    def _set_user_row(self, u: int, n_events: int, items: list[int]) -> None:
        m, first = self.neighbours, N_STAGES
        items = items[: max(self.context, self.profile)]
        weights = self._weights[len(items)]
        stage = stage_of(n_events)
        row = self._users.view[u]
        row[:] = 0.0
        row[stage] = self.stage_weight
        row[first : first + len(items)] = items
        row[first + m : first + m + len(items)] = weights
        active = np.flatnonzero(weights)
        self._unpacked[u] = (
            stage,
            float(row[stage]),
            np.array(items, dtype=np.int64)[active],
            weights[active].astype(np.float64),
        )

    # -- state, for checkpoints and the store --------------------------------

    def scores_all(self, u: int) -> np.ndarray:
        """Every item's score for user ``u``: (n_items,) float64.

        The same arithmetic as storage.ranking.session_scores on the exported
        rows, with the logarithms taken from the per-event caches.
        """
        stage, stage_weight, recent, weights = self._unpacked[u]
        scores = self._log_counts.view.copy()
        if stage_weight:
            scores += stage_weight * self._log_stages[stage].view
        if len(recent):
            neighbours = self._neighbour_ids.view[recent]
            counts = self._log_neighbours.view[recent] * weights[:, None]
            scores += np.bincount(neighbours.ravel(), weights=counts.ravel(), minlength=self.n_item)
        return scores

    def ranking_inputs(self, u: int | None):
        """("session", user row or None, item rows, item counts) for storage.ranking."""
        items, counts = self.export_items()
        user = self._users.view[u] if u is not None else None
        return self.score_rule, user, items, counts

    def user_rows(self, users: np.ndarray) -> np.ndarray:
        """Rows of ``users``: (len(users), width) float32, a copy."""
        return self._users.view[np.asarray(users, dtype=np.int64)]

    def export_items(self) -> tuple[np.ndarray, np.ndarray]:
        """(item rows [stage counts | neighbour ids | neighbour counts], counts), float32."""
        stages = np.stack([rows.view for rows in self._stages], axis=1)
        ids = self._neighbour_ids.view.astype(np.float32)
        rows = np.hstack([stages, ids, self._neighbour_counts.view])
        return rows, self._counts.view.copy()

    def drift_rows(self, item_rows: np.ndarray) -> np.ndarray:
        """Each item's share of all likes, split by stage: (n_items, N_STAGES) float32.

        Counts only grow, so their change is growth; how the shares move is
        the shift in what users like.
        """
        stages = np.asarray(item_rows[:, :N_STAGES], dtype=np.float32)
        total = float(stages.sum())
        return stages / total if total else stages

    def global_state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, user_rows, item_rows, item_bias, state, histories) -> None:
        """Resume from exported rows: they are the whole state."""
        first, m = N_STAGES, self.neighbours
        item_rows = np.asarray(item_rows, dtype=np.float32)
        user_rows = np.asarray(user_rows, dtype=np.float32)
        self._users = GrowableRows.from_array(user_rows)
        self._unpacked = [_unpack(row, m) for row in user_rows]
        self._counts = GrowableRows.from_array(np.asarray(item_bias, dtype=np.float32))
        self._stages = [GrowableRows.from_array(item_rows[:, s].copy()) for s in range(first)]
        ids = item_rows[:, first : first + m].astype(np.int64)
        self._neighbour_ids = GrowableRows.from_array(ids, dtype=np.int64)
        self._neighbour_counts = GrowableRows.from_array(item_rows[:, first + m :])
        self._log_counts = _logs(self._counts.view)
        self._log_stages = [_logs(rows.view) for rows in self._stages]
        self._log_neighbours = _logs(self._neighbour_counts.view)
        self._slots = [
            {int(ids[item, slot]): int(slot) for slot in np.flatnonzero(counts)}
            for item, counts in enumerate(self._neighbour_counts.view)
        ]
        self.n_user, self.n_item = len(user_rows), len(item_rows)


_NO_CONTEXT = (0, 0.0, np.empty(0, dtype=np.int64), np.empty(0))


def _unpack(row: np.ndarray, m: int) -> tuple[int, float, np.ndarray, np.ndarray]:
    """A stored user row as (stage, stage weight, item indices, item weights) for ranking."""
    stage = int(np.argmax(row[:N_STAGES]))
    weights = row[N_STAGES + m :]
    active = np.flatnonzero(weights)
    items = row[N_STAGES + active].astype(np.int64)
    return stage, float(row[stage]), items, weights[active].astype(np.float64)


def _logs(counts: np.ndarray) -> GrowableRows:
    return GrowableRows.from_array(np.log1p(counts.astype(np.float64)), dtype=np.float64)


def _check_dense(index: int, expected: int, kind: str) -> None:
    if index != expected:
        raise IndexError(f"{kind} index {index} registered out of order (expected {expected})")
