"""The hybrid model's state as the checkpoints and the store keep it: export and restore.

Rows of the store's "session" layout (storage.ranking): per user [weight
per stage | recent items | their weights], per item [counts per stage |
neighbour ids | neighbour counts], and the ring of the latest likes as the
model's global state. A reader ranks from them exactly as the engine does.
"""

from __future__ import annotations

import numpy as np

from engine.models.growable import GrowableRows
from storage import N_STAGES, log1p_counts, widen_session_rows

_CHUNK = 65_536  # users per block when exporting rows


class HybridRows:
    """Export and restore for engine.models.hybrid.HybridRecommender (a mixin of it)."""

    def ranking_inputs(self, u: int | None):
        """("session", user row or None, item rows, item counts) for storage.ranking."""
        items, counts = self.export_items()
        user = self.user_rows(np.array([u]))[0] if u is not None else None
        return self.score_rule, user, items, counts

    def user_rows(self, users: np.ndarray) -> np.ndarray:
        """Rows of ``users`` in the store's "session" layout: (len(users), S + 2R) float32.

        [weight per stage (S) | the user's weighted items, newest first (R) |
        their weights (R)], R = max(context, profile), zeros in unused slots.
        """
        users = np.asarray(users, dtype=np.int64)
        s, r = N_STAGES, self._row_items
        stages, actives = self._stage.view, self._n_active.view
        rows = np.zeros((len(users), s + 2 * r), dtype=np.float32)
        for start in range(0, len(users), _CHUNK):  # bounded temporaries for a million users
            chunk, block = users[start : start + _CHUNK], rows[start : start + _CHUNK]
            active = actives[chunk]
            block[np.arange(len(chunk)), stages[chunk]] = self._stage_weight
            used = np.arange(r) < active[:, None]
            block[:, s : s + r] = np.where(used, self._recent.view[chunk], 0)
            block[:, s + r :] = self._weights32[active]
        return rows

    def export_items(self) -> tuple[np.ndarray, np.ndarray]:
        """(item rows [stage counts | neighbour ids | neighbour counts], counts), float32."""
        return self.item_rows(np.arange(self.n_item))

    def item_rows(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows and counts of ``items`` only: ((len(items), S + 2M), (len(items),)) float32."""
        items = np.asarray(items, dtype=np.int64)
        s, m = N_STAGES, self.neighbours
        # Written in place into one array: at 100k items the temporaries and
        # the hstack they fed took 0.9 s of a full checkpoint's capture.
        rows = np.empty((len(items), s + 2 * m), dtype=np.float32)
        np.take(self._stage_counts.view, items, axis=0, out=rows[:, :s])
        ids = rows[:, s : s + m]
        ids[...] = self._neighbour_ids.view[items]
        # The store's rows hold 0 in unused slots (index + 1 is 0 there), with a count of 0.
        np.subtract(ids, 1, out=ids)
        np.maximum(ids, 0, out=ids)
        np.take(self._neighbour_counts.view, items, axis=0, out=rows[:, s + m :])
        return rows, self._counts.view[items]

    def drain_touched(self) -> set[int]:
        """Items whose rows changed since the last call."""
        flags = self._touched.view
        touched = np.flatnonzero(flags)
        flags[touched] = 0
        return set(touched.tolist())

    def drift_rows(self) -> np.ndarray:
        """Each item's share of all likes, split by stage: (n_items, N_STAGES) float32.

        Counts only grow, so their change is growth; how the shares move is
        the shift in what users like.
        """
        stages = self._stage_counts.view.copy()
        total = float(stages.sum())
        return stages / total if total else stages

    def global_state(self) -> dict[str, np.ndarray]:
        """The latest likes' items, oldest first: (<= popularity_window,) int32."""
        if not self.popularity_window:
            return {}
        slot, filled = self._likes_state.tolist()
        return {"likes": np.roll(self._likes, -slot)[-filled:] if filled else self._likes[:0]}

    def load_state(self, user_rows, item_rows, item_bias, state, histories) -> None:
        """Resume from exported rows and the ring of latest likes.

        User rows may be of any width S + 2R' (stores written before the
        compact layout have R' = neighbours); only weighted items count. A
        store without the ring (written before popularity had a window)
        keeps its counts and starts an empty ring: likes from then on come
        and go, the ones before stay counted.
        """
        self.initialize()
        likes = np.asarray(state.get("likes", self._likes[:0]), dtype=np.int32)
        likes = likes[len(likes) - min(len(likes), self.popularity_window) :]
        self._likes[: len(likes)] = likes
        self._likes_state[:] = (len(likes) % max(self.popularity_window, 1), len(likes))
        s, m = N_STAGES, self.neighbours
        if len(item_bias):
            item_rows = np.asarray(item_rows, dtype=np.float32).reshape(len(item_bias), -1)
        else:  # a model that has seen no item yet
            item_rows = np.zeros((0, s + 2 * m), dtype=np.float32)
        if item_rows.shape[1] < s + 2 * m:  # the store keeps only the used slots
            item_rows = widen_session_rows(item_rows, m)
        user_rows = np.asarray(user_rows, dtype=np.float32)
        n_items, n_users = len(item_rows), len(user_rows)
        counts = np.asarray(item_bias, dtype=np.float32)
        stage_counts = item_rows[:, :s]
        neighbour_counts = item_rows[:, s + m :]
        ids = np.where(neighbour_counts > 0, item_rows[:, s : s + m] + 1, 0).astype(np.int32)
        log_stages = log1p_counts(stage_counts)
        self._counts = GrowableRows.from_array(counts)
        self._stage_counts = GrowableRows.from_array(stage_counts)
        self._log_stages = GrowableRows.from_array(log_stages, dtype=np.float64)
        self._neighbour_ids = GrowableRows.from_array(ids, dtype=np.int32)
        self._neighbour_counts = GrowableRows.from_array(neighbour_counts)
        self._filled = GrowableRows.from_array(
            np.count_nonzero(neighbour_counts, axis=1), dtype=np.int32
        )
        self._touched = GrowableRows.from_array(np.zeros(n_items), dtype=np.uint8)
        small = np.all(
            (neighbour_counts >= 0)
            & (neighbour_counts < len(self._log1p) - 1)
            & (neighbour_counts == np.floor(neighbour_counts))
        )
        self._large_counts[0] = not small
        capacity = self._counts.buffer.shape[0]
        self._base = np.zeros((s, capacity))
        self._base[:, :n_items] = (
            log1p_counts(counts)[:, None] + self._stage_weight * log_stages
        ).T
        self._scratch = np.zeros(capacity + 1)
        self._bind()

        stored = (user_rows.shape[1] - s) // 2 if n_users else 0
        r = min(stored, self._row_items)
        active = np.count_nonzero(user_rows[:, s + stored : s + stored + r], axis=1)
        recent = np.zeros((n_users, self._row_items), dtype=np.int32)
        recent[:, :r] = user_rows[:, s : s + r]
        self._recent = GrowableRows.from_array(recent, dtype=np.int32)
        self._n_active = GrowableRows.from_array(active, dtype=np.int16)
        # With no weight on stages any stage ranks alike; 0 then.
        stages = np.argmax(user_rows[:, :s], axis=1) if n_users else np.zeros(0)
        self._stage = GrowableRows.from_array(stages, dtype=np.int8)
        self.n_user, self.n_item = n_users, n_items
