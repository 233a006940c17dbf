"""Read queries shared by the engine's writer connection and read-only readers."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace

import numpy as np

from storage import _histories as history_segments
from storage import _segments as segments
from storage._codec import decode_array, decode_rows
from storage._session_rows import decode_session_rows
from storage.records import (
    Checkpoint,
    IntervalMetrics,
    ModelState,
    PartitionPoint,
    PartitionState,
    Totals,
)

_CHECKPOINT_COLUMNS_0001 = (
    "id, time, model, params, topic, offsets, users, items, interval_s, received, accepted, "
    "positive, rejected, evaluated, model_hits, popular_hits, update_us, evaluate_us, lag, "
    "factor_change, panel_overlap, total_received, total_accepted, total_positive, "
    "total_rejected, total_evaluated, total_model_hits, total_popular_hits"
)
# The checkpoint columns of each store version, newest first. A store no
# engine of this version has opened yet (a reader cannot migrate it) lacks
# the later ones, and reads them as NULL: its checkpoints say nothing of them.
_CHECKPOINT_COLUMN_SETS = (
    _CHECKPOINT_COLUMNS_0001
    + ", broker_connected, stalled_since, rng_state, rejected_by_reason, worker, shared",
    _CHECKPOINT_COLUMNS_0001
    + ", broker_connected, stalled_since, rng_state, rejected_by_reason, NULL, NULL",  # < 0013
    _CHECKPOINT_COLUMNS_0001
    + ", broker_connected, stalled_since, rng_state, NULL, NULL, NULL",  # < 0012
    _CHECKPOINT_COLUMNS_0001 + ", NULL, NULL, NULL, NULL, NULL, NULL",  # < 0002
)
PARTITIONS = "checkpoint_partitions"
_PARTITION_COLUMNS = (
    'p.partition, p."offset", p.received, p.accepted, p.positive, p.rejected, p.evaluated, '
    "p.model_hits, p.popular_hits, p.lag"
)


def latest_checkpoint(conn: sqlite3.Connection) -> Checkpoint | None:
    for columns in _CHECKPOINT_COLUMN_SETS:
        try:
            row = conn.execute(
                f"SELECT {columns} FROM checkpoints ORDER BY id DESC LIMIT 1"
            ).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such column" not in str(exc) or columns == _CHECKPOINT_COLUMN_SETS[-1]:
                raise
            continue
        if not row:
            return None
        checkpoint = _checkpoint_from_row(row)
        if _has_table(conn, PARTITIONS):
            rows = conn.execute(
                f"SELECT {_PARTITION_COLUMNS} FROM {PARTITIONS} AS p "  # noqa: S608
                "WHERE p.checkpoint_id = ? ORDER BY p.partition",
                [checkpoint.id],
            ).fetchall()
            checkpoint = replace(checkpoint, partitions=[_partition_state(r) for r in rows])
        return checkpoint
    return None


def best_partitions(conn: sqlite3.Connection) -> list[PartitionPoint]:
    """Each partition's most advanced state in this store: highest offset, then newest checkpoint.

    Empty for a store without partition rows (before 0013, or written offline).
    """
    if not _has_table(conn, PARTITIONS):
        return []
    rows = conn.execute(
        f"""SELECT c.time, c.id, c.worker, {_PARTITION_COLUMNS}
            FROM (SELECT DISTINCT partition FROM {PARTITIONS}) AS d
            JOIN {PARTITIONS} AS p ON p.partition = d.partition AND p.checkpoint_id = (
                SELECT b.checkpoint_id FROM {PARTITIONS} AS b WHERE b.partition = d.partition
                ORDER BY b."offset" DESC, b.checkpoint_id DESC LIMIT 1)
            JOIN checkpoints AS c ON c.id = p.checkpoint_id
            ORDER BY p.partition"""  # noqa: S608
    ).fetchall()
    return [PartitionPoint(r[0], r[1], r[2], _partition_state(r[3:])) for r in rows]


def _partition_state(row: tuple) -> PartitionState:
    partition, offset, *counts, lag = row
    return PartitionState(partition=partition, offset=offset, totals=Totals(*counts), lag=lag)


def _checkpoint_from_row(row: tuple) -> Checkpoint:
    (
        id_,
        time,
        model,
        params,
        topic,
        offsets,
        users,
        items,
        interval_s,
        received,
        accepted,
        positive,
        rejected,
        evaluated,
        model_hits,
        popular_hits,
        update_us,
        evaluate_us,
        lag,
        factor_change,
        panel_overlap,
        *rest,
    ) = row
    *counts, broker_connected, stalled_since, rng_state, rejected_by_reason, worker, shared = rest
    totals = Totals(*counts)
    return Checkpoint(
        id=id_,
        time=time,
        model=model,
        params=json.loads(params),
        topic=topic,
        offsets={int(p): o for p, o in json.loads(offsets).items()},
        totals=totals,
        interval=IntervalMetrics(
            interval_s=interval_s,
            received=received,
            accepted=accepted,
            positive=positive,
            rejected=rejected,
            evaluated=evaluated,
            model_hits=model_hits,
            popular_hits=popular_hits,
            update_us=update_us,
            evaluate_us=evaluate_us,
            lag=lag,
            factor_change=factor_change,
            panel_overlap=panel_overlap,
        ),
        users=users,
        items=items,
        broker_connected=None if broker_connected is None else bool(broker_connected),
        stalled_since=stalled_since,
        rng_state=None if rng_state is None else json.loads(rng_state),
        rejected_by_reason=_rejected_by_reason(rejected_by_reason, totals.rejected),
        worker=worker,
        shared=None if shared is None else json.loads(shared),
    )


def _rejected_by_reason(stored: str | None, rejected: int) -> dict[str, int]:
    """The stored counts by kind; a checkpoint from before 0012 has only its total to give."""
    if stored is not None:
        return json.loads(stored)
    return {"counted before reasons were kept": rejected} if rejected else {}


def item_state(
    conn: sqlite3.Connection, rule: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(item rows (n, width) float32, bias (n,), counts (n,)) of every item, in index order.

    From the item segments, or from the tables of a store that no engine of
    this version has opened yet. None when there are no item rows.
    """
    if not _has_table(conn, segments.ITEMS):
        return _legacy_item_state(conn, rule)
    n = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    if not n:
        return None
    rows = segments.read_all(conn, segments.ITEMS, rule, n)
    scalars = rows.scalars if rows.scalars is not None else np.zeros((n, 2), np.float32)
    return rows.rows, scalars[:, 0].copy(), scalars[:, 1].copy()


def item_rows_since(
    conn: sqlite3.Connection, checkpoint_id: int, rule: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Items written after ``checkpoint_id``: (indices (m,), rows (m, width), bias, counts)."""
    if not _has_table(conn, segments.ITEMS):
        return _legacy_item_rows_since(conn, checkpoint_id, rule)
    rows = segments.read_since(conn, segments.ITEMS, rule, checkpoint_id)
    scalars = rows.scalars if rows.scalars is not None else np.zeros((0, 2), np.float32)
    return rows.indices, rows.rows, scalars[:, 0].copy(), scalars[:, 1].copy()


def user_row(
    conn: sqlite3.Connection, user_id: str, rule: str
) -> tuple[int, np.ndarray | None] | None:
    """(index, stored row or None if none was written) of a user, or None if unknown."""
    if not _has_table(conn, segments.USERS):
        row = conn.execute("SELECT idx, factors FROM users WHERE id = ?", [user_id]).fetchone()
        return None if row is None else (row[0], decode_stored_rows([row[1]], rule)[0])
    row = conn.execute("SELECT idx FROM users WHERE id = ?", [user_id]).fetchone()
    if row is None:
        return None
    return row[0], segments.read_row(conn, segments.USERS, rule, row[0])


def user_history(conn: sqlite3.Connection, user: int) -> list[tuple[int, float]]:
    """(item index, event time) of a user's history, newest first."""
    if not _has_table(conn, history_segments.TABLE):
        return conn.execute(
            "SELECT item_idx, time FROM history WHERE user_idx = ? ORDER BY seq DESC", [user]
        ).fetchall()
    records = history_segments.read_user(conn, user)[::-1]
    return list(zip(records["item"].tolist(), records["time"].tolist(), strict=True))


def _legacy_item_state(
    conn: sqlite3.Connection, rule: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Every item's row from the one-row-per-item table (stores before 0011_row_segments)."""
    if not _has_table(conn, "item_rows"):
        return _latest_snapshot(conn)
    blobs, bias, counts = [], [], []
    for blob, b, c in conn.execute("SELECT factors, bias, count FROM item_rows ORDER BY idx"):
        blobs.append(blob)
        bias.append(b)
        counts.append(c)
    if not blobs:
        return _latest_snapshot(conn)
    return (
        decode_stored_rows(blobs, rule),
        np.array(bias, dtype=np.float32),
        np.array(counts, dtype=np.float32),
    )


def _legacy_item_rows_since(
    conn: sqlite3.Connection, checkpoint_id: int, rule: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    indices, blobs, bias, counts = [], [], [], []
    for idx, blob, b, c in conn.execute(
        "SELECT idx, factors, bias, count FROM item_rows WHERE checkpoint_id > ? ORDER BY idx",
        [checkpoint_id],
    ):
        indices.append(idx)
        blobs.append(blob)
        bias.append(b)
        counts.append(c)
    return (
        np.array(indices, dtype=np.int64),
        decode_stored_rows(blobs, rule),
        np.array(bias, dtype=np.float32),
        np.array(counts, dtype=np.float32),
    )


def score_rule(conn: sqlite3.Connection, checkpoint_id: int) -> str:
    return conn.execute(
        "SELECT score_rule FROM checkpoints WHERE id = ?", [checkpoint_id]
    ).fetchone()[0]


def checkpoint_span(conn: sqlite3.Connection, table: str, since: float) -> tuple | None:
    """(first time, last time, checkpoints) of ``table``'s per-checkpoint rows with ``time >=
    since``; None when there are none, or no such table (a store not migrated yet)."""
    if not _has_table(conn, table):
        return None
    first, last, count = conn.execute(
        f"SELECT MIN(time), MAX(time), COUNT(DISTINCT checkpoint_id) FROM {table} "  # noqa: S608
        "WHERE time >= ?",
        [since],
    ).fetchone()
    return (first, last, count) if count else None


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", [name]).fetchone() is not None


def _latest_snapshot(
    conn: sqlite3.Connection,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The newest whole-catalogue snapshot (stores written before 0005_item_rows)."""
    row = conn.execute(
        "SELECT item_factors, item_bias, item_counts FROM model_snapshots "
        "ORDER BY checkpoint_id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    factors, bias, counts = (decode_array(blob) for blob in row)
    return factors, bias, counts


def model_state(conn: sqlite3.Connection, checkpoint: Checkpoint) -> ModelState:
    """Load everything the engine needs to resume from ``checkpoint``."""
    rule = score_rule(conn, checkpoint.id)
    items = item_state(conn, rule)
    if items is None:
        if conn.execute("SELECT 1 FROM items LIMIT 1").fetchone() is not None:
            raise ValueError("checkpoint without item rows")
        # A model that has seen no item yet (a worker started before its producers).
        items = (np.zeros((0, 0), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32))
    item_factors, item_bias, item_counts = items
    user_ids = [row[0] for row in conn.execute("SELECT id FROM users ORDER BY idx")]
    if _has_table(conn, segments.USERS):
        user_factors = segments.read_all(conn, segments.USERS, rule, len(user_ids)).rows
    else:
        blobs = [row[0] for row in conn.execute("SELECT factors FROM users ORDER BY idx")]
        user_factors = decode_stored_rows(blobs, rule)
    if not user_ids:
        user_factors = np.zeros((0, item_factors.shape[1]), dtype=np.float32)
    item_ids = [row[0] for row in conn.execute("SELECT id FROM items ORDER BY idx")]
    histories: dict[int, list[int]] = {}
    if _has_table(conn, history_segments.TABLE):
        records = history_segments.read_all(conn)
        users, items = records["user"], records["item"].tolist()
        cuts = np.flatnonzero(np.diff(users)) + 1
        for start, end in zip([0, *cuts.tolist()], [*cuts.tolist(), len(users)], strict=True):
            if end > start:
                histories[int(users[start])] = items[start:end]
    else:
        for user_idx, item_idx in conn.execute(
            "SELECT user_idx, item_idx FROM history ORDER BY user_idx, seq"
        ):
            histories.setdefault(user_idx, []).append(item_idx)
    return ModelState(
        model=checkpoint.model,
        params=checkpoint.params,
        score_rule=rule,
        user_ids=user_ids,
        item_ids=item_ids,
        user_factors=user_factors,
        item_factors=item_factors,
        item_bias=item_bias,
        item_counts=item_counts,
        histories=histories,
    )


def item_names(conn: sqlite3.Connection, after: int = 0) -> tuple[dict[str, str], int]:
    """Names whose row id is above ``after`` (a cursor), and the largest row id seen.

    ``put_item_names`` replaces rows, which gives them a new, larger row id, so
    a cursor sees every name added or changed since it was taken.
    """
    rows = conn.execute(
        "SELECT rowid, id, name FROM item_names WHERE rowid > ? ORDER BY rowid", [after]
    ).fetchall()
    cursor = rows[-1][0] if rows else after
    return {item: name for _, item, name in rows}, cursor


def decode_stored_rows(blobs: list[bytes], rule: str) -> np.ndarray:
    """Stored user or item rows as one (n, width) float32 matrix.

    "session" rows are stored without their unused slots (storage._session_rows)
    and padded back to the widest; every other rule's rows have one width.
    """
    if rule == "session":
        return decode_session_rows(blobs)
    return decode_rows(blobs, len(blobs[0]) // 4 if blobs else 0)
