"""The read API: what the dashboard and the status command see of the store.

Every call opens its own short-lived read-only connection and reads inside one
transaction, so it sees one whole checkpoint and is safe from any thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from storage import _queries as queries
from storage._connection import connect_readonly
from storage._item_cache import ITEM_CACHE
from storage.errors import NoCheckpoint, StoreError
from storage.ranking import N_STAGES, score_items, top_n
from storage.records import (
    Checkpoint,
    HistoryItem,
    MetricsPoint,
    OnlinePoint,
    PartitionPoint,
    PartitionState,
    Recommendations,
    RecommendedItem,
    RejectedCount,
    RejectedEvent,
    Totals,
)

MAX_USER_ID_LENGTH = 256
MAX_N = 100


class StoreReader:
    """Read-only access to a store at ``path``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        conn = connect_readonly(self.path)
        try:
            conn.execute("BEGIN")
            try:
                if not conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE name = 'checkpoints'"
                ).fetchone():
                    raise NoCheckpoint(
                        f"no checkpoint in {self.path} yet; start the engine with ./run.sh"
                    )
                yield conn
            finally:
                conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from None
        finally:
            conn.close()

    def latest_checkpoint(self) -> Checkpoint:
        """The newest checkpoint; raises NoCheckpoint when there is none yet."""
        with self._read() as conn:
            return self._require_checkpoint(conn)

    def metrics(self, since: float = 0.0, max_points: int = 2000) -> list[MetricsPoint]:
        """Per-interval metrics with ``time >= since`` (Unix seconds), oldest first.

        When more than ``max_points`` intervals match, neighbours are merged into
        equal time buckets so a chart never gets more than ``max_points`` points.
        """
        if max_points < 2:
            raise ValueError(f"max_points must be at least 2, got {max_points}")
        with self._read() as conn:
            first, last, count = conn.execute(
                "SELECT MIN(time), MAX(time), COUNT(*) FROM checkpoints WHERE time >= ?", [since]
            ).fetchone()
            if not count:
                return []
            group, params = _time_buckets(since, first, last, count, max_points, "id")
            rows = conn.execute(
                f"""SELECT MAX(time), SUM(interval_s), SUM(received), SUM(accepted),
                           SUM(positive), SUM(rejected), SUM(evaluated), SUM(model_hits),
                           SUM(popular_hits), MAX(total_evaluated), MAX(total_model_hits),
                           MAX(total_popular_hits), AVG(update_us), AVG(evaluate_us),
                           MAX(users), MAX(items), MAX(lag), AVG(factor_change),
                           AVG(panel_overlap)
                    FROM checkpoints WHERE time >= ? GROUP BY {group} ORDER BY MAX(time)""",
                params,
            ).fetchall()
        return [_metrics_point(row) for row in rows]

    def online_metrics(self, since: float = 0.0, max_points: int = 2000) -> list[OnlinePoint]:
        """Impressions and clicks per A/B variant per interval with ``time >= since``.

        Oldest first, one point per variant per interval. When more than
        ``max_points`` intervals match, neighbours are merged into equal time
        buckets, as in ``metrics``. Empty for a store without impressions.
        """
        with self._read() as conn:
            span = queries.checkpoint_span(conn, "online_metrics", since)
            if span is None:
                return []
            group, params = _time_buckets(since, *span, max_points, "checkpoint_id")
            rows = conn.execute(
                f"""SELECT MAX(time), SUM(interval_s), variant, SUM(impressions), SUM(clicks)
                    FROM online_metrics WHERE time >= ?
                    GROUP BY {group}, variant ORDER BY MAX(time), variant""",
                params,
            ).fetchall()
        return [OnlinePoint(*row) for row in rows]

    def partitions(self) -> list[PartitionPoint]:
        """Each partition's most advanced state this store holds, by partition.

        The row with the highest offset (ties: the newest checkpoint) among the
        checkpoints kept, whether or not the worker still owns the partition.
        Empty for a store with no partition rows (older, or written offline).
        """
        with self._read() as conn:
            return queries.best_partitions(conn)

    def partition_history(self, since: float = 0.0, max_points: int = 2000) -> list[PartitionPoint]:
        """Every partition row with ``time >= since`` (Unix seconds), oldest first.

        When more than ``max_points`` checkpoints match, neighbours are merged
        into equal time buckets as in ``metrics``: a bucket's point holds its
        last time, highest offset and counts, and its highest lag.
        """
        if max_points < 2:
            raise ValueError(f"max_points must be at least 2, got {max_points}")
        with self._read() as conn:
            span = queries.checkpoint_span(conn, queries.PARTITIONS, since)
            if span is None:
                return []
            group, params = _time_buckets(since, *span, max_points, "checkpoint_id")
            rows = conn.execute(
                f"""SELECT MAX(time), MAX(checkpoint_id), MAX(worker), partition, MAX("offset"),
                           MAX(received), MAX(accepted), MAX(positive), MAX(rejected),
                           MAX(evaluated), MAX(model_hits), MAX(popular_hits), MAX(lag)
                    FROM (SELECT p.*, c.worker AS worker FROM checkpoint_partitions AS p
                          JOIN checkpoints AS c ON c.id = p.checkpoint_id WHERE p.time >= ?)
                    GROUP BY {group}, partition ORDER BY MAX(time), partition""",
                params,
            ).fetchall()
        return [
            PartitionPoint(
                time=r[0],
                checkpoint_id=r[1],
                worker=r[2],
                state=PartitionState(r[3], r[4], Totals(*r[5:12]), r[12]),
            )
            for r in rows
        ]

    def recommend(self, user: str, n: int = 10) -> Recommendations:
        """Top-``n`` items for ``user`` from the latest checkpoint, seen items excluded.

        An unknown user gets the most popular items, with ``fallback=True``; so
        does every user of a model whose state the store cannot rank from (its
        snapshot says rule "popular" though the model is not popularity).
        """
        user = validate_user_id(user)
        if not 1 <= n <= MAX_N:
            raise ValueError(f"n must be between 1 and {MAX_N}, got {n}")
        with self._read() as conn:
            checkpoint = self._require_checkpoint(conn)
            rule = queries.score_rule(conn, checkpoint.id)
            row = queries.user_row(conn, user, rule)
            seen = None
            if row is not None:
                seen = np.array([i for i, _ in queries.user_history(conn, row[0])], np.int64)
            with ITEM_CACHE.lock:
                items = ITEM_CACHE.rows(conn, self.path, checkpoint)
                if items is None:
                    raise NoCheckpoint(f"no model state in {self.path} yet")
                if row is None:
                    best, scores = top_n(items.counts, n)
                else:
                    user_vector = row[1]
                    if user_vector is None:  # registered, never learned: an empty row
                        width = N_STAGES if items.rule == "session" else items.factors.shape[1]
                        user_vector = np.zeros(width, dtype=np.float32)
                    scores_all = score_items(items.rule, user_vector, items.factors, items.bias)
                    best, scores = top_n(scores_all, n, exclude=seen)
            # A model whose state the store cannot rank from exports rule "popular".
            fallback = row is None or (items.rule == "popular" and checkpoint.model != "popular")
            names = _item_ids_and_names(conn, best)
        items = [
            RecommendedItem(rank=rank, item=names[idx][0], name=names[idx][1], score=float(score))
            for rank, (idx, score) in enumerate(zip(best.tolist(), scores, strict=True), 1)
        ]
        return Recommendations(
            user=user,
            items=items,
            fallback=fallback,
            model="popular" if fallback else checkpoint.model,
            checkpoint_time=checkpoint.time,
        )

    def history(self, user: str, limit: int = 20) -> list[HistoryItem]:
        """The user's most recent positive items, newest first (empty if unknown)."""
        user = validate_user_id(user)
        with self._read() as conn:
            row = conn.execute("SELECT idx FROM users WHERE id = ?", [user]).fetchone()
            if row is None:
                return []
            newest = queries.user_history(conn, row[0])[:limit]
            names = _item_ids_and_names(conn, np.array([i for i, _ in newest], np.int64))
        return [HistoryItem(item=names[i][0], name=names[i][1], time=time) for i, time in newest]

    def user_ids(self, prefix: str = "", limit: int = 50) -> list[str]:
        """Known user ids starting with ``prefix``, for suggestions."""
        with self._read() as conn:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'users'").fetchone():
                return []
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = conn.execute(
                "SELECT id FROM users WHERE id LIKE ? ESCAPE '\\' ORDER BY idx LIMIT ?",
                [escaped + "%", limit],
            ).fetchall()
        return [row[0] for row in rows]

    def rejected_events(self, limit: int = 100) -> list[RejectedEvent]:
        """The latest rejected messages, newest first."""
        with self._read() as conn:
            rows = conn.execute(
                'SELECT time, reason, partition, "offset", payload FROM rejected_events '
                "ORDER BY id DESC LIMIT ?",
                [limit],
            ).fetchall()
        return [RejectedEvent(*row) for row in rows]

    def rejected_counts(self, since: float = 0.0, bucket_s: float = 60.0) -> list[RejectedCount]:
        """Rejected messages per reason per time bucket of ``bucket_s`` seconds."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT CAST(time / ? AS INTEGER) * ?, reason, COUNT(*) FROM rejected_events "
                "WHERE time >= ? GROUP BY 1, 2 ORDER BY 1, 2",
                [bucket_s, bucket_s, since],
            ).fetchall()
        return [
            RejectedCount(time=float(t), reason=reason, count=count) for t, reason, count in rows
        ]

    def _require_checkpoint(self, conn: sqlite3.Connection) -> Checkpoint:
        checkpoint = queries.latest_checkpoint(conn)
        if checkpoint is None:
            raise NoCheckpoint(f"no checkpoint in {self.path} yet; start the engine with ./run.sh")
        return checkpoint


def _time_buckets(
    since: float, first: float, last: float, count: int, max_points: int, per_interval: str
) -> tuple[str, list]:
    """GROUP BY expression and parameters: one row per interval, or ``max_points`` equal buckets.

    The parameters start with ``since`` for the query's ``WHERE time >= ?``.
    """
    if count > max_points:
        return "CAST((time - ?) / ? AS INTEGER)", [since, first, (last - first) / (max_points - 1)]
    return per_interval, [since]


def validate_user_id(user: str) -> str:
    """Return the id stripped of surrounding spaces, or raise ValueError saying what is wrong."""
    if not isinstance(user, str):
        raise ValueError("a user id must be text")
    user = user.strip()
    if not user:
        raise ValueError("type a user id")
    if len(user) > MAX_USER_ID_LENGTH:
        raise ValueError(
            f"a user id has at most {MAX_USER_ID_LENGTH} characters; this one has {len(user)}"
        )
    if any(ord(ch) < 32 for ch in user):
        raise ValueError("a user id cannot contain control characters")
    return user


def _item_ids_and_names(
    conn: sqlite3.Connection, indices: np.ndarray
) -> dict[int, tuple[str, str | None]]:
    if not len(indices):
        return {}
    marks = ",".join("?" * len(indices))
    rows = conn.execute(
        f"SELECT i.idx, i.id, n.name FROM items i LEFT JOIN item_names n ON n.id = i.id "
        f"WHERE i.idx IN ({marks})",
        indices.tolist(),
    ).fetchall()
    return {idx: (item_id, name) for idx, item_id, name in rows}


def _metrics_point(row: tuple) -> MetricsPoint:
    (
        time,
        interval_s,
        received,
        accepted,
        positive,
        rejected,
        evaluated,
        model_hits,
        popular_hits,
        total_evaluated,
        total_model_hits,
        total_popular_hits,
        update_us,
        evaluate_us,
        users,
        items,
        lag,
        factor_change,
        panel_overlap,
    ) = row
    return MetricsPoint(
        time=time,
        interval_s=interval_s,
        received=received,
        accepted=accepted,
        positive=positive,
        rejected=rejected,
        events_per_s=received / interval_s if interval_s else 0.0,
        recall_at_10=model_hits / evaluated if evaluated else None,
        popular_recall_at_10=popular_hits / evaluated if evaluated else None,
        cumulative_recall_at_10=total_model_hits / total_evaluated if total_evaluated else None,
        cumulative_popular_recall_at_10=(
            total_popular_hits / total_evaluated if total_evaluated else None
        ),
        update_us=update_us,
        evaluate_us=evaluate_us,
        users=users,
        items=items,
        lag=lag,
        factor_change=factor_change,
        panel_overlap=panel_overlap,
    )
