"""Checkpoints of the stream processor: capture what changed, and restore from the store.

A capture is synchronous and self-contained: the CheckpointWrite shares no
array with the live model, so the checkpointer writes it from its own
thread while the processor goes on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np

from engine.evaluation.prequential import TOP_N
from engine.kernels import top_n
from engine.models.baseline import PopularityCounts
from engine.models.history import UserHistory
from engine.processing.drift import factor_change, mean_jaccard
from storage import (
    Checkpoint,
    CheckpointWrite,
    IntervalMetrics,
    ModelState,
    RejectedEvent,
    Totals,
    transient_arrays,
)

log = logging.getLogger(__name__)


class CheckpointCapture:
    """checkpoint() and restore() of engine.processing.processor.StreamProcessor (a mixin of it)."""

    def checkpoint(
        self, now: float | None = None, lag: int | None = None, full: bool = False
    ) -> CheckpointWrite:
        """Snapshot everything since the last checkpoint and start a new interval.

        Only the users and items that changed are in it, unless ``full``:
        then every user's and item's row is (the history still holds only
        its changes). Synchronous and self-contained: the result shares no
        array with the live model, so it can be written from another thread.
        """
        with transient_arrays():  # the exports are written once and freed
            return self._snapshot(time.time() if now is None else now, lag, full)

    def _snapshot(self, now: float, lag: int | None, full: bool) -> CheckpointWrite:
        rec = self.recommender
        items = self._changed_items()
        if full:
            items = None
        if items is None:
            item_factors, item_bias = rec.export_items()
            item_counts = self.popularity.view.copy()
        else:
            item_factors, item_bias = rec.item_rows(items)
            item_counts = self.popularity.view[items]
        panel = self._panel_top_lists()
        interval = self._interval_metrics(now, lag)
        drift_rows = rec.drift_rows()
        if self._previous_items is not None and drift_rows.shape[1]:
            interval.factor_change = factor_change(self._previous_items, drift_rows)
        interval.panel_overlap = mean_jaccard(self._previous_panel, panel)
        touched = self.history.drain_touched()
        if full:
            touched = np.arange(rec.n_users, dtype=np.int64)
        added, removed = self.history.drain_changes()
        write = CheckpointWrite(
            time=now,
            topic=self.config.topic,
            offsets=dict(self.offsets),
            totals=Totals(**vars(self.totals)),
            interval=interval,
            model=rec.model,
            params=rec.export_params(),
            score_rule=rec.score_rule,
            n_users=rec.n_users,
            n_items=rec.n_items,
            new_user_ids=rec.user_ids[self._users_at_checkpoint :],
            new_item_ids=rec.item_ids[self._items_at_checkpoint :],
            touched_users=touched,
            touched_user_factors=rec.user_factors(touched),
            touched_items=items,
            item_factors=item_factors,
            item_bias=item_bias,
            item_counts=item_counts,
            history_added=added,
            history_removed=removed,
            rejected=self._rejected,
            rejected_by_reason=dict(self.rejected_by_reason),
            rng_state=self._rng.state,
        )
        self._users_at_checkpoint, self._items_at_checkpoint = rec.n_users, rec.n_items
        self._previous_items = drift_rows
        self._previous_panel = panel
        self._reset_interval(now)
        return write

    def restore(self, checkpoint: Checkpoint, state: ModelState) -> None:
        """Continue from a stored checkpoint, exactly where it left off."""
        if state.model != self.recommender.model:
            log.warning(
                "the store holds a %s model; continuing with it instead of %s",
                state.model,
                self.recommender.model,
            )
        self.history = UserHistory.restore(self.config.history_limit, state.histories)
        self.recommender = self._new_recommender(state.model, state.params)
        user_factors, item_factors = state.user_factors, state.item_factors
        if not state.item_ids:
            # The store keeps no rows of a model that has seen no item, so not their width
            # either: take the empty rows of a new model of the same kind.
            item_factors = self.recommender.export_items()[0]
            user_factors = self.recommender.user_factors(np.arange(0, dtype=np.int64))
        self.recommender.load(
            state.user_ids,
            state.item_ids,
            user_factors,
            item_factors,
            state.item_bias,
            self.history,
        )
        self.popularity = PopularityCounts.from_array(state.item_counts)
        self.totals = Totals(**vars(checkpoint.totals))
        self.rejected_by_reason = dict(checkpoint.rejected_by_reason)
        self.offsets = dict(checkpoint.offsets)
        self.partition_totals = {
            state.partition: Totals(**vars(state.totals)) for state in checkpoint.partitions
        }
        if not self.partition_totals and self.offsets:
            # A store from before partitions were counted: its first partition takes them all.
            self.partition_totals[min(self.offsets)] = Totals(**vars(self.totals))
        shared = checkpoint.shared or {}
        self.applied = {int(p): offset for p, offset in shared.get("applied", {}).items()}
        self._users_at_checkpoint, self._items_at_checkpoint = (
            len(state.user_ids),
            len(state.item_ids),
        )
        self._previous_items = self.recommender.drift_rows()
        self._previous_panel = self._panel_top_lists()
        self._reset_interval(time.time())
        if checkpoint.rng_state is not None:
            # The same tie-breaks and samples as an engine that never stopped.
            self._rng.state = checkpoint.rng_state

    def _changed_items(self) -> np.ndarray | None:
        """Items whose rows changed since the last checkpoint (sorted int64); None: all of them."""
        rec = self.recommender
        touched = rec.drain_touched_items()
        if touched is None:
            return None
        # New items are always written, even one registered without being learned.
        return np.union1d(touched, np.arange(self._items_at_checkpoint, rec.n_items))

    def _panel_top_lists(self) -> dict[int, frozenset[int]]:
        """Top-10 lists of a fixed panel (the first users ever seen), seen items excluded."""
        rec = self.recommender
        panel: dict[int, frozenset[int]] = {}
        for user in range(min(self.config.panel_size, rec.n_users)):
            best, _ = top_n(rec.scores(user), TOP_N, exclude=self.history.items(user))
            panel[user] = frozenset(best.tolist())
        return panel

    def _interval_metrics(self, now: float, lag: int | None) -> IntervalMetrics:
        """The counts and mean times since the interval began (the totals' differences)."""
        start, totals = self._totals_at_interval, self.totals
        t, t0 = self.timings, self._timings_at_interval
        updates, evaluations = t.updates - t0.updates, t.evaluations - t0.evaluations
        return IntervalMetrics(
            **vars(totals.since(start)),
            interval_s=max(now - self._interval_started, 1e-9),
            update_us=1e6 * (t.update_s - t0.update_s) / updates if updates else None,
            evaluate_us=(
                1e6 * (t.evaluate_s - t0.evaluate_s) / evaluations if evaluations else None
            ),
            lag=lag,
        )

    def _reset_interval(self, now: float) -> None:
        # Counters count once, in the totals; an interval's counts are differences.
        self._totals_at_interval = Totals(**vars(self.totals))
        self._timings_at_interval = replace(self.timings)  # a copy
        self._interval_started = now
        self._rejected: list[RejectedEvent] = []
