"""Rows of the "session" rule stored without their unused slots.

Both its user and its item rows are [S values | L slots | L slots] (see
storage.ranking.session_scores): item indices and their counts, or recent
items and their weights. A slot is unused when its second value is zero, and
used slots come first, so a row is stored as [S | first f | first f] with f
its used slots: a hybrid item row with a dozen neighbours takes 0.2 KB, not
1 KB. Decoding pads every row back to the widest, which scores exactly alike
(an unused slot adds log(1 + 0) x weight = 0).
"""

from __future__ import annotations

import numpy as np

from storage.ranking import N_STAGES


def encode_session_rows(rows: np.ndarray) -> list[bytes]:
    """Each row of (n, S + 2L) without its unused slots, as raw little-endian float32."""
    rows = np.ascontiguousarray(rows, dtype="<f4")
    n, width = rows.shape
    slots = (width - N_STAGES) // 2
    used = _used_slots(rows[:, N_STAGES + slots :])
    keep = _layout_mask(used, slots)
    data = rows[keep].tobytes()
    ends = np.cumsum(4 * (N_STAGES + 2 * used)).tolist()
    return [data[start:end] for start, end in zip([0, *ends], ends, strict=False)]


def pack_session_rows(rows: np.ndarray) -> tuple[bytes, np.ndarray]:
    """All rows of (n, S + 2L) without their unused slots, as one buffer and each row's end.

    The buffer is every row of encode_session_rows back to back; ends is (n,)
    int64, the byte offset where each row ends.
    """
    rows = np.ascontiguousarray(rows, dtype="<f4")
    slots = (rows.shape[1] - N_STAGES) // 2
    used = _used_slots(rows[:, N_STAGES + slots :])
    return rows[_layout_mask(used, slots)].tobytes(), np.cumsum(4 * (N_STAGES + 2 * used))


def unpack_session_rows(data: bytes, ends: np.ndarray, min_slots: int = 0) -> np.ndarray:
    """Rows packed by pack_session_rows as one (n, S + 2L) float32 matrix, as decode_session_rows."""
    lengths = np.diff(np.asarray(ends, dtype=np.int64), prepend=0)
    used = (lengths // 4 - N_STAGES) // 2
    slots = max(int(used.max()) if len(used) else 0, min_slots)
    rows = np.zeros((len(used), N_STAGES + 2 * slots), dtype=np.float32)
    if len(used):
        rows[_layout_mask(used, slots)] = np.frombuffer(data, dtype="<f4")
    return rows


def decode_session_rows(blobs: list[bytes], min_slots: int = 0) -> np.ndarray:
    """Rows encoded by encode_session_rows as one (n, S + 2L) float32 matrix.

    L is the widest row's slots, or ``min_slots`` if that is more; shorter
    rows get zeros in their unused slots.
    """
    used = (np.array([len(blob) for blob in blobs], dtype=np.int64) // 4 - N_STAGES) // 2
    slots = max(int(used.max()) if len(used) else 0, min_slots)
    rows = np.zeros((len(blobs), N_STAGES + 2 * slots), dtype=np.float32)
    if blobs:
        rows[_layout_mask(used, slots)] = np.frombuffer(b"".join(blobs), dtype="<f4")
    return rows


def widen_session_rows(rows: np.ndarray, slots: int) -> np.ndarray:
    """(n, S + 2L) rows re-laid with ``slots`` >= L slots per block."""
    old = (rows.shape[1] - N_STAGES) // 2
    wide = np.zeros((len(rows), N_STAGES + 2 * slots), dtype=rows.dtype)
    wide[:, : N_STAGES + old] = rows[:, : N_STAGES + old]
    wide[:, N_STAGES + slots : N_STAGES + slots + old] = rows[:, N_STAGES + old :]
    return wide


def _used_slots(second: np.ndarray) -> np.ndarray:
    """(n,) slots up to the last with a non-zero second value."""
    nonzero = second != 0
    last = second.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)
    return np.where(nonzero.any(axis=1), last, 0)


def _layout_mask(used: np.ndarray, slots: int) -> np.ndarray:
    """(n, S + 2 * slots) bool: the stage values and each row's first ``used`` slots per block."""
    column = np.arange(N_STAGES + 2 * slots)
    first = (column >= N_STAGES) & (column < N_STAGES + slots)
    second = column >= N_STAGES + slots
    slot = np.where(first, column - N_STAGES, column - N_STAGES - slots)
    return (column < N_STAGES) | ((first | second) & (slot < used[:, None]))
