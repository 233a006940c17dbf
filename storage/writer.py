"""The engine's side of the store: one checkpoint per transaction, then pruning."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from storage import _histories as histories
from storage import _queries as queries
from storage import _segments as segments
from storage._connection import BUSY_TIMEOUT_MS, open_writable
from storage._transient_arrays import transient_arrays
from storage.records import Checkpoint, CheckpointWrite, ModelState


class StoreWriter:
    """Writes checkpoints; owns the only read-write connection to the database.

    Use it from one thread only (SQLite connections are bound to their thread).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        keep_snapshots: int = 3,
        metrics_retention_s: float = 7 * 86400,
        keep_rejected: int = 10_000,
    ):
        self.path = Path(path)
        self.keep_snapshots = keep_snapshots
        self.metrics_retention_s = metrics_retention_s
        self.keep_rejected = keep_rejected
        self.db = open_writable(self.path)

    def close(self) -> None:
        self.db.close()

    def latest(self) -> tuple[Checkpoint, ModelState] | None:
        """The latest checkpoint and its model state, or None for a new store."""
        checkpoint = queries.latest_checkpoint(self.db.conn)
        if checkpoint is None:
            return None
        return checkpoint, queries.model_state(self.db.conn, checkpoint)

    def write_checkpoint(self, cp: CheckpointWrite) -> int:
        """Write one checkpoint atomically; returns its id.

        Only what changed is written: the touched users' rows, the touched
        items' rows (every item's when ``cp.touched_items`` is None), and the
        history rows added or evicted.
        """
        with transient_arrays(), self.db.atomic():  # packed copies are freed once written
            checkpoint_id = self._insert_checkpoint_row(cp)
            self._write_users(cp, checkpoint_id)
            self._write_items(cp, checkpoint_id)
            if cp.history_added or cp.history_removed:
                histories.write(
                    self.db.conn,
                    checkpoint_id,
                    histories.records(cp.history_added),
                    histories.pairs(cp.history_removed),
                )
            self.db.conn.executemany(
                'INSERT INTO rejected_events (time, reason, partition, "offset", payload) '
                "VALUES (?, ?, ?, ?, ?)",
                [(r.time, r.reason, r.partition, r.offset, r.payload) for r in cp.rejected],
            )
            self.db.conn.executemany(
                "INSERT INTO online_metrics "
                "(checkpoint_id, time, interval_s, variant, impressions, clicks) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        checkpoint_id,
                        cp.time,
                        cp.interval.interval_s,
                        c.variant,
                        c.impressions,
                        c.clicks,
                    )
                    for c in cp.online
                ],
            )
            self.db.conn.executemany(
                'INSERT INTO checkpoint_partitions (checkpoint_id, partition, time, "offset", '
                "received, accepted, positive, rejected, evaluated, model_hits, popular_hits, lag) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        checkpoint_id,
                        p.partition,
                        cp.time,
                        p.offset,
                        *asdict(p.totals).values(),
                        p.lag,
                    )
                    for p in cp.partitions
                ],
            )
            self._prune(checkpoint_id, cp.time)
        self._trim_wal()
        return checkpoint_id

    def item_names(self, after: int = 0) -> tuple[dict[str, str], int]:
        """Display names recorded since cursor ``after``, and the cursor to pass next time.

        Start with 0 for every name; a later call with the returned cursor
        gives only names added or changed since, so polling stays cheap.
        """
        return queries.item_names(self.db.conn, after)

    def put_item_names(self, names: dict[str, str]) -> None:
        """Record display names for items, keyed by external id."""
        with self.db.atomic():
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO item_names (id, name) VALUES (?, ?)", names.items()
            )

    def _insert_checkpoint_row(self, cp: CheckpointWrite) -> int:
        interval, totals = cp.interval, cp.totals
        cursor = self.db.execute(
            "INSERT INTO checkpoints (time, topic, offsets, model, params, score_rule, users, "
            "items, interval_s, received, accepted, positive, rejected, evaluated, model_hits, "
            "popular_hits, update_us, evaluate_us, lag, factor_change, panel_overlap, "
            "total_received, total_accepted, total_positive, total_rejected, total_evaluated, "
            "total_model_hits, total_popular_hits, broker_connected, stalled_since, rng_state, "
            "rejected_by_reason, worker, shared) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?, ?, ?, ?, ?, ?, ?)",
            [
                cp.time,
                cp.topic,
                json.dumps({str(p): o for p, o in cp.offsets.items()}),
                cp.model,
                json.dumps(cp.params),
                cp.score_rule,
                cp.n_users,
                cp.n_items,
                interval.interval_s,
                interval.received,
                interval.accepted,
                interval.positive,
                interval.rejected,
                interval.evaluated,
                interval.model_hits,
                interval.popular_hits,
                interval.update_us,
                interval.evaluate_us,
                interval.lag,
                interval.factor_change,
                interval.panel_overlap,
                *asdict(totals).values(),
                None if cp.broker_connected is None else int(cp.broker_connected),
                cp.stalled_since,
                None if cp.rng_state is None else json.dumps(cp.rng_state),
                json.dumps(cp.rejected_by_reason),
                cp.worker,
                None if cp.shared is None else json.dumps(cp.shared),
            ],
        )
        return cursor.lastrowid

    def _write_users(self, cp: CheckpointWrite, checkpoint_id: int) -> None:
        """Insert new users' ids, and write the rows of the touched users."""
        first_new = cp.n_users - len(cp.new_user_ids)
        self.db.conn.executemany(
            "INSERT INTO users (idx, id) VALUES (?, ?)",
            zip(itertools.count(first_new), cp.new_user_ids),
        )
        touched, factors = np.asarray(cp.touched_users, dtype=np.int64), cp.touched_user_factors
        if np.any(touched[1:] <= touched[:-1]):
            order = np.argsort(touched, kind="stable")
            touched, factors = touched[order], factors[order]
        segments.write(
            self.db.conn,
            segments.USERS,
            cp.score_rule,
            checkpoint_id,
            segments.Rows(touched, np.asarray(factors, dtype=np.float32)),
            cp.n_users,
        )

    def _write_items(self, cp: CheckpointWrite, checkpoint_id: int) -> None:
        """Insert new items' ids; write the rows of the touched items (of all, if not said)."""
        first_new = cp.n_items - len(cp.new_item_ids)
        self.db.conn.executemany(
            "INSERT INTO items (idx, id) VALUES (?, ?)",
            zip(itertools.count(first_new), cp.new_item_ids),
        )
        n = len(cp.item_bias)
        items = (
            np.arange(n, dtype=np.int64)
            if cp.touched_items is None
            else np.asarray(cp.touched_items, dtype=np.int64)
        )
        scalars = np.empty((n, 2), dtype=np.float32)
        scalars[:, 0], scalars[:, 1] = cp.item_bias, cp.item_counts
        segments.write(
            self.db.conn,
            segments.ITEMS,
            cp.score_rule,
            checkpoint_id,
            segments.Rows(items, np.asarray(cp.item_factors, dtype=np.float32), scalars),
            cp.n_items,
        )

    def _trim_wal(self) -> None:
        """Copy the WAL into the database and truncate it, unless a reader still needs it.

        Without this the WAL only grows while readers keep it busy. The busy
        timeout is lifted for the call: when a reader holds an old snapshot
        SQLite answers "busy" at once, and the next checkpoint tries again, so
        the engine never waits for a reader.
        """
        self.db.execute("PRAGMA busy_timeout=0")
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def _prune(self, checkpoint_id: int, now: float) -> None:
        self.db.execute(
            "DELETE FROM model_snapshots WHERE checkpoint_id NOT IN "
            "(SELECT checkpoint_id FROM model_snapshots ORDER BY checkpoint_id DESC LIMIT ?)",
            [self.keep_snapshots],
        )
        self.db.execute(
            "DELETE FROM checkpoints WHERE time < ? AND id <> ?",
            [now - self.metrics_retention_s, checkpoint_id],
        )
        self.db.execute(
            "DELETE FROM online_metrics WHERE time < ? AND checkpoint_id <> ?",
            [now - self.metrics_retention_s, checkpoint_id],
        )
        # A partition's rows go with their checkpoints, as online_metrics do; the
        # latest checkpoint's stay, and a reader takes each partition's most
        # advanced state among those kept (storage.deployment).
        self.db.execute(
            "DELETE FROM checkpoint_partitions WHERE time < ? AND checkpoint_id <> ?",
            [now - self.metrics_retention_s, checkpoint_id],
        )
        self.db.execute(
            "DELETE FROM rejected_events WHERE id <= "
            "(SELECT id FROM rejected_events ORDER BY id DESC LIMIT 1 OFFSET ?)",
            [self.keep_rejected],
        )
