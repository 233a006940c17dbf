"""Users' histories as packed segments per chunk of users, as their rows are (storage._segments).

Each user keeps their newest positive items. A checkpoint adds records for
the users it touched and drops those the per-user bound evicted; kept one
SQLite row per record, 10k of them scattered over millions rewrite thousands
of pages. Here the users of one chunk (storage._segments.CHUNK) share a *base*
with their records and *deltas* with what each checkpoint added and removed;
a chunk is merged back into one base as its rows are. For a (user, item)
pair the latest segment that added or removed it decides.

``added`` holds RECORD entries, ``removed`` PAIR entries, both little-endian
packed arrays; a base holds its records ordered by user, then seq.
"""

from __future__ import annotations

import sqlite3

import numpy as np

from storage import _segments as segments

TABLE = "history_segments"
# One record: the user, the item, the event's time (Unix seconds) and the engine's
# sequence number, which orders events with equal times.
RECORD = np.dtype([("user", "<i4"), ("item", "<i4"), ("time", "<f8"), ("seq", "<i8")])
PAIR = np.dtype([("user", "<i4"), ("item", "<i4")])


def records(rows: list[tuple[int, int, float, int]]) -> np.ndarray:
    """(user, item, time, seq) tuples as RECORD entries."""
    return np.array(rows, dtype=RECORD) if rows else np.zeros(0, RECORD)


def pairs(rows: list[tuple[int, int]]) -> np.ndarray:
    """(user, item) tuples as PAIR entries."""
    return np.array(rows, dtype=PAIR) if rows else np.zeros(0, PAIR)


def write(
    conn: sqlite3.Connection, checkpoint_id: int, added: np.ndarray, removed: np.ndarray
) -> None:
    """Store a checkpoint's history changes: a delta per chunk, or a merged base where due."""
    if not len(added) and not len(removed):
        return
    added = added[np.argsort(added["user"], kind="stable")]
    removed = removed[np.argsort(removed["user"], kind="stable")]
    chunks = np.union1d(added["user"] // segments.CHUNK, removed["user"] // segments.CHUNK)
    a_cuts = np.searchsorted(added["user"], np.append(chunks, chunks[-1:] + 1) * segments.CHUNK)
    r_cuts = np.searchsorted(removed["user"], np.append(chunks, chunks[-1:] + 1) * segments.CHUNK)
    pending = segments.pending_chunks(conn, TABLE)
    budget = segments.MERGE_BUDGET * (len(added) + len(removed))
    inserts = []  # one statement for all, as segments.write: a chunk at a time cost 0.3 ms each
    due = []
    for k, chunk in enumerate(chunks.tolist()):
        part = (added[a_cuts[k] : a_cuts[k + 1]], removed[r_cuts[k] : r_cuts[k + 1]])
        urgency = segments.pressure(pending.get(chunk), len(part[0]) + len(part[1]))
        if urgency >= 1.0:
            due.append((urgency, chunk, part))
        else:
            inserts.append(_values(checkpoint_id, chunk, False, *part))
    for _, chunk, part in sorted(due, key=lambda d: -d[0]):
        if budget > 0:
            merged = merge([*_read(conn, chunk), part])
            budget -= len(merged)
            conn.execute(f"DELETE FROM {TABLE} WHERE chunk = ?", [chunk])  # noqa: S608
            inserts.append(_values(checkpoint_id, chunk, True, merged, np.zeros(0, PAIR)))
        else:
            inserts.append(_values(checkpoint_id, chunk, False, *part))
    conn.executemany(
        f"INSERT INTO {TABLE} (chunk, checkpoint_id, base, n, added, removed) "  # noqa: S608
        "VALUES (?, ?, ?, ?, ?, ?)",
        inserts,
    )


def read_all(conn: sqlite3.Connection) -> np.ndarray:
    """Every user's records, ordered by user, then seq."""
    return merge(_read(conn, None))


def read_user(conn: sqlite3.Connection, user: int) -> np.ndarray:
    """One user's records, oldest first."""
    parts = [
        (added[added["user"] == user], removed[removed["user"] == user])
        for added, removed in _read(conn, user // segments.CHUNK)
    ]
    return merge(parts)


def merge(parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Apply (added, removed) parts in order; the records that remain, by user, then seq."""
    added = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, RECORD)
    removed = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, PAIR)
    if not len(added):
        return added
    if not len(removed) and len(parts) <= 1:
        return added[np.lexsort((added["seq"], added["user"]))]
    order = np.concatenate(
        [np.full(len(p[0]), k) for k, p in enumerate(parts)]
        + [np.full(len(p[1]), k) for k, p in enumerate(parts)]
    )
    keys = np.concatenate([_key(added), _key(removed)])
    # The last operation on each pair wins; one part never both adds and removes a pair.
    ranked = np.lexsort((order, keys))
    ordered = keys[ranked]
    winners = ranked[np.append(ordered[1:] != ordered[:-1], True)]
    kept = added[winners[winners < len(added)]]
    return kept[np.lexsort((kept["seq"], kept["user"]))]


def _key(entries: np.ndarray) -> np.ndarray:
    return entries["user"].astype(np.int64) << 32 | entries["item"].astype(np.int64)


def _read(conn: sqlite3.Connection, chunk: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(added, removed) of every segment, or of one chunk's, oldest first."""
    rows = (
        conn.execute(f"SELECT added, removed FROM {TABLE} ORDER BY id")  # noqa: S608
        if chunk is None
        else conn.execute(
            f"SELECT added, removed FROM {TABLE} WHERE chunk = ? ORDER BY id",  # noqa: S608
            [chunk],
        )
    )
    return [
        (np.frombuffer(added, dtype=RECORD), np.frombuffer(removed, dtype=PAIR))
        for added, removed in rows
    ]


def _values(
    checkpoint_id: int, chunk: int, base: bool, added: np.ndarray, removed: np.ndarray
) -> list:
    """One segment's row, in the column order write() inserts."""
    return [
        chunk,
        checkpoint_id,
        int(base),
        len(added) + len(removed),
        np.ascontiguousarray(added).tobytes(),
        np.ascontiguousarray(removed).tobytes(),
    ]
