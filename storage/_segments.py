"""User and item rows as packed segments: a base blob per chunk of indices, plus small deltas.

One SQLite row per user makes a checkpoint of 10k users scattered over a
million rewrite about as many 4 KB pages, and copy them once more out of the
WAL. Here the rows of CHUNK consecutive indices live in a few blobs instead:
a *base* with the chunk's rows and *deltas* with only the rows that changed.
A checkpoint appends one delta per chunk it touched. A chunk whose deltas
grow past MERGE_SHARE of a chunk (or past MAX_DELTAS of them) is *merged*:
its segments are read back, the new rows applied, and the result written as
one new base in place of them all. A later segment's row wins, so readers
apply a chunk's segments in id order.

A segment holds ``indices`` (int32, ascending), ``ends`` (uint32, where each
row ends in ``data``, in bytes), ``data`` (the rows back to back: raw
little-endian float32, "session" rows without their unused slots, as
storage._session_rows) and, for items, ``scalars``: each row's bias and
count (float32, (m, 2)).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import numpy as np

from storage._session_rows import pack_session_rows, unpack_session_rows, widen_session_rows
from storage.ranking import N_STAGES

CHUNK = 4096  # consecutive indices per chunk
MERGE_SHARE = 1.0  # a chunk whose deltas hold as many rows as its base is merged into one
# A small base is merged with its deltas once they reach this many rows, so a
# store of a few hundred users does not carry many times its size in deltas.
MIN_MERGE_ROWS = 256
MAX_DELTAS = 128  # so is one with this many deltas, however small
# Rows that merges may rewrite per write, as a multiple of the rows written: chunks
# that fill up together are then merged over several checkpoints, not all in one.
MERGE_BUDGET = 3

USERS, ITEMS = "user_segments", "item_segments"


@dataclass
class Rows:
    """Rows of some indices: ``indices`` (m,) int64 ascending, ``rows`` (m, width) float32,
    ``scalars`` (m, 2) float32 (bias and count, items only) or None."""

    indices: np.ndarray
    rows: np.ndarray
    scalars: np.ndarray | None = None


def write(
    conn: sqlite3.Connection, table: str, rule: str, checkpoint_id: int, update: Rows, n: int
) -> None:
    """Store ``update`` (sorted, unique indices below ``n``, the rows that exist).

    Each touched chunk gets a delta, or a new base when the update holds every
    row of the chunk or the chunk is due for a merge (within the budget).
    Rows are packed and inserted PACK_ROWS at a time, not a chunk at a time:
    10k rows scattered over 250 chunks of a million cost 0.3 ms a chunk that
    way. The bound keeps a full checkpoint's packed copies small.
    """
    if not len(update.indices):
        return
    chunks = update.indices // CHUNK
    cuts = [0, *(np.flatnonzero(np.diff(chunks)) + 1).tolist(), len(chunks)]
    parts = [
        (int(chunks[start]), slice(start, end)) for start, end in zip(cuts, cuts[1:], strict=False)
    ]
    whole = [chunk for chunk, part in parts if _holds_whole_chunk(chunk, part, n)]
    conn.executemany(
        f"DELETE FROM {table} WHERE chunk = ?",  # noqa: S608
        [[chunk] for chunk in whole],
    )
    replacing = set(whole)
    pending = pending_chunks(conn, table)
    due: list[tuple[float, int, Packed]] = []
    for group in _groups(parts):
        segments = []
        for chunk, part, rows in _packed_group(update, rule, group):
            if chunk in replacing:
                segments.append((chunk, True, rows))
                continue
            urgency = pressure(pending.get(chunk), part.stop - part.start)
            if urgency >= 1.0:
                due.append((urgency, chunk, rows))
            else:
                segments.append((chunk, False, rows))
        _insert_many(conn, table, checkpoint_id, segments)
    budget = MERGE_BUDGET * len(update.indices)
    segments = []
    for _, chunk, rows in sorted(due, key=lambda d: -d[0]):
        if budget > 0:
            merged = merge_packed([*_read_packed(conn, table, chunk), rows])
            budget -= len(merged.indices)
            conn.execute(f"DELETE FROM {table} WHERE chunk = ?", [chunk])  # noqa: S608
            segments.append((chunk, True, merged))
        else:
            segments.append((chunk, False, rows))
    _insert_many(conn, table, checkpoint_id, segments)


PACK_ROWS = 65536  # rows packed and inserted together by write(), at most (but a whole chunk)


def _holds_whole_chunk(chunk: int, part: slice, n: int) -> bool:
    return part.stop - part.start == min(n, (chunk + 1) * CHUNK) - chunk * CHUNK


def _groups(parts: list[tuple[int, slice]]) -> list[list[tuple[int, slice]]]:
    """Consecutive parts in groups of PACK_ROWS rows at most (or one part, if larger)."""
    groups: list[list[tuple[int, slice]]] = []
    rows = PACK_ROWS
    for chunk, part in parts:
        size = part.stop - part.start
        if rows + size > PACK_ROWS:
            groups.append([])
            rows = 0
        groups[-1].append((chunk, part))
        rows += size
    return groups


def _packed_group(update: Rows, rule: str, group: list[tuple[int, slice]]):
    """(chunk, part, Packed) for each part of ``group``, from one pack of all their rows."""
    first, last = group[0][1].start, group[-1][1].stop
    data, ends = pack(update.rows[first:last], rule)
    view = memoryview(data)  # each segment's bytes without a copy
    for chunk, part in group:
        begin = int(ends[part.start - first - 1]) if part.start > first else 0
        stop = int(ends[part.stop - first - 1])
        yield (
            chunk,
            part,
            Packed(
                update.indices[part],
                ends[part.start - first : part.stop - first] - begin,
                view[begin:stop],
                None if update.scalars is None else update.scalars[part],
            ),
        )


def _insert_many(
    conn: sqlite3.Connection,
    table: str,
    checkpoint_id: int,
    segments: list[tuple[int, bool, Packed]],
) -> None:
    conn.executemany(
        f"INSERT INTO {table} (chunk, checkpoint_id, base, n, indices, ends, data, scalars) "  # noqa: S608
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [_segment_values(checkpoint_id, chunk, base, rows) for chunk, base, rows in segments],
    )


@dataclass
class Packed:
    """A segment as stored: ``indices`` and ``ends`` (m,) int64, ``data``, ``scalars``."""

    indices: np.ndarray
    ends: np.ndarray
    data: bytes | memoryview
    scalars: np.ndarray | None = None


def merge_packed(parts: list[Packed]) -> Packed:
    """Segments (oldest first) as one, each index with its newest row, without decoding rows.

    A stored row is a run of 4-byte values that stands alone, whatever its
    rule, so merging only gathers the winning runs.
    """
    indices = np.concatenate([p.indices for p in parts])
    # A stable sort keeps equal indices in write order: the last of each is the newest.
    order = np.argsort(indices, kind="stable")
    ordered = indices[order]
    pick = order[np.append(ordered[1:] != ordered[:-1], True)]
    base = np.cumsum([0, *(len(p.data) // 4 for p in parts[:-1])])
    stops = np.concatenate([p.ends // 4 + b for p, b in zip(parts, base, strict=True)])
    starts = np.concatenate(
        [np.append(0, p.ends[:-1] // 4) + b for p, b in zip(parts, base, strict=True)]
    )
    starts, lengths = starts[pick], stops[pick] - starts[pick]
    ends = np.cumsum(lengths)
    values = np.frombuffer(b"".join(p.data for p in parts), dtype="<u4")
    gather = np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(
        ends - lengths - starts, lengths
    )
    scalars = None
    if parts[0].scalars is not None:
        scalars = np.concatenate([p.scalars for p in parts])[pick]
    return Packed(indices[pick], 4 * ends, values[gather].tobytes(), scalars)


def read_all(conn: sqlite3.Connection, table: str, rule: str, n: int) -> Rows:
    """Every row 0..n-1, as dense arrays (zeros for a row never written)."""
    parts = [
        _decode(rule, *row)
        for row in conn.execute(
            f"SELECT indices, ends, data, scalars FROM {table} ORDER BY id"  # noqa: S608
        )
    ]
    return _dense(combine(parts, rule), n)


def read_since(conn: sqlite3.Connection, table: str, rule: str, checkpoint_id: int) -> Rows:
    """The rows written by checkpoints after ``checkpoint_id``, newest of each index."""
    parts = [
        _decode(rule, *row)
        for row in conn.execute(
            f"SELECT indices, ends, data, scalars FROM {table} "  # noqa: S608
            "WHERE checkpoint_id > ? ORDER BY id",
            [checkpoint_id],
        )
    ]
    return combine(parts, rule)


def read_row(conn: sqlite3.Connection, table: str, rule: str, index: int) -> np.ndarray | None:
    """The newest row of ``index`` (float32), or None if none was written.

    Only the segments' indices and ends and the row's own bytes are read, not
    whole bases (an incremental blob read).
    """
    for segment, blob, ends in conn.execute(
        f"SELECT id, indices, ends FROM {table} WHERE chunk = ? ORDER BY id DESC",  # noqa: S608
        [index // CHUNK],
    ):
        indices = np.frombuffer(blob, dtype="<i4")
        pos = int(np.searchsorted(indices, index))
        if pos == len(indices) or indices[pos] != index:
            continue
        bounds = np.frombuffer(ends, dtype="<u4")
        start, end = (int(bounds[pos - 1]) if pos else 0), int(bounds[pos])
        with conn.blobopen(table, "data", segment, readonly=True) as data:
            data.seek(start)
            raw = data.read(end - start)
        return unpack(raw, np.array([end - start]), rule)[0]
    return None


def combine(parts: list[Rows], rule: str) -> Rows:
    """Segments (oldest first) as one: each index once, with its newest row.

    Each part is written over the result in turn, so only the result and one
    part are in memory at once (not every segment's rows side by side).
    """
    parts = [p for p in parts if len(p.indices)]
    if not parts:
        return Rows(np.zeros(0, np.int64), np.zeros((0, 0), np.float32))
    if len(parts) == 1:
        return parts[0]
    indices = np.unique(np.concatenate([p.indices for p in parts]))
    width = max(p.rows.shape[1] for p in parts)
    if rule != "session" and any(p.rows.shape[1] != width for p in parts):
        raise ValueError(f"rows of different widths under rule {rule!r}")
    slots = (width - N_STAGES) // 2
    rows = np.zeros((len(indices), width), dtype=np.float32)
    scalars = None if parts[0].scalars is None else np.zeros((len(indices), 2), np.float32)
    for part in parts:
        at = np.searchsorted(indices, part.indices)
        part_rows = part.rows
        if part_rows.shape[1] != width:
            part_rows = widen_session_rows(part_rows, slots)
        rows[at] = part_rows
        if scalars is not None:
            scalars[at] = part.scalars
    return Rows(indices, rows, scalars)


def pack(rows: np.ndarray, rule: str) -> tuple[bytes, np.ndarray]:
    """Rows (m, width) as one buffer and each row's end in it (bytes, (m,) int64)."""
    if rule == "session":
        return pack_session_rows(rows)
    rows = np.ascontiguousarray(rows, dtype="<f4")
    return rows.tobytes(), np.arange(1, len(rows) + 1, dtype=np.int64) * (4 * rows.shape[1])


def unpack(data: bytes, ends: np.ndarray, rule: str) -> np.ndarray:
    """Rows packed by ``pack``: (m, width) float32, "session" rows padded to the widest."""
    if rule == "session":
        return unpack_session_rows(data, ends)
    m = len(ends)
    width = int(ends[-1]) // 4 // m if m else 0
    return np.frombuffer(data, dtype="<f4").reshape(m, width).copy()


def pending_chunks(conn: sqlite3.Connection, table: str) -> dict[int, tuple[int, int, int]]:
    """Chunk -> (deltas, rows in them, rows in its base) over the chunks of ``table``."""
    chunks: dict[int, list[int]] = {}
    for chunk, base, count, rows in conn.execute(
        f"SELECT chunk, base, COUNT(*), SUM(n) FROM {table} GROUP BY chunk, base"  # noqa: S608
    ):
        entry = chunks.setdefault(chunk, [0, 0, 0])
        if base:
            entry[2] += rows
        else:
            entry[0], entry[1] = count, rows
    return {chunk: tuple(entry) for chunk, entry in chunks.items()}


def pressure(pending: tuple[int, int, int] | None, new: int) -> float:
    """How due a chunk is for a merge once ``new`` rows are added to it; 1 or more: due.

    Deltas are merged when they would hold MERGE_SHARE of the base (of
    MIN_MERGE_ROWS at least), or number MAX_DELTAS.
    """
    deltas, rows, base = pending or (0, 0, 0)
    return max((rows + new) / (MERGE_SHARE * max(base, MIN_MERGE_ROWS)), (deltas + 1) / MAX_DELTAS)


def _segment_values(checkpoint_id: int, chunk: int, base: bool, rows: Packed) -> list:
    """The values of one segment's row, in the column order write() inserts."""
    return [
        chunk,
        checkpoint_id,
        int(base),
        len(rows.indices),
        rows.indices.astype("<i4").tobytes(),
        rows.ends.astype("<u4").tobytes(),
        rows.data,
        None if rows.scalars is None else np.ascontiguousarray(rows.scalars, "<f4").tobytes(),
    ]


def _read_packed(conn: sqlite3.Connection, table: str, chunk: int) -> list[Packed]:
    """The segments of one chunk as stored, oldest first."""
    return [
        Packed(
            np.frombuffer(indices, dtype="<i4").astype(np.int64),
            np.frombuffer(ends, dtype="<u4").astype(np.int64),
            data,
            None if scalars is None else np.frombuffer(scalars, dtype="<f4").reshape(-1, 2),
        )
        for indices, ends, data, scalars in conn.execute(
            f"SELECT indices, ends, data, scalars FROM {table} "  # noqa: S608
            "WHERE chunk = ? ORDER BY id",
            [chunk],
        )
    ]


def _decode(rule: str, indices: bytes, ends: bytes, data: bytes, scalars: bytes | None) -> Rows:
    index = np.frombuffer(indices, dtype="<i4").astype(np.int64)
    return Rows(
        index,
        unpack(data, np.frombuffer(ends, dtype="<u4").astype(np.int64), rule),
        None if scalars is None else np.frombuffer(scalars, dtype="<f4").reshape(len(index), 2),
    )


def _dense(rows: Rows, n: int) -> Rows:
    """Rows of indices 0..n-1 in order, zeros where none was written."""
    if len(rows.indices) == n and (n == 0 or rows.indices[-1] == n - 1):
        return rows
    dense = Rows(
        np.arange(n, dtype=np.int64),
        np.zeros((n, rows.rows.shape[1]), np.float32),
        None if rows.scalars is None else np.zeros((n, 2), np.float32),
    )
    keep = rows.indices < n
    dense.rows[rows.indices[keep]] = rows.rows[keep]
    if rows.scalars is not None:
        dense.scalars[rows.indices[keep]] = rows.scalars[keep]
    return dense
