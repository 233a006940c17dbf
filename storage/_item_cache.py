"""Every item's row, cached per store for readers and refreshed with only the rows that changed.

A lookup ranks the whole catalogue, so it needs every item's row; reading
100,000 rows per request would take longer than the ranking. The cache keeps
them per store file and, when a newer checkpoint exists, reads only the rows
written since (the checkpoint_id of item segments, storage._segments). Hold ``lock`` while reading and
ranking from the arrays: a refresh updates them in place.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storage import _queries as queries
from storage._session_rows import widen_session_rows
from storage.ranking import N_STAGES
from storage.records import Checkpoint

MAX_STORES = 4  # stores cached at once; the least recently used goes first


@dataclass
class ItemRows:
    """The rows of one checkpoint: ``factors`` (n, width) float32, ``bias`` and ``counts`` (n,)."""

    checkpoint_id: int
    checkpoint_time: float
    rule: str
    factors: np.ndarray
    bias: np.ndarray
    counts: np.ndarray


class ItemCache:
    """Item rows of the latest checkpoint of a few stores, by resolved path."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._stores: OrderedDict[str, ItemRows] = OrderedDict()

    def rows(self, conn: sqlite3.Connection, path: Path, checkpoint: Checkpoint) -> ItemRows | None:
        """The item rows as of ``checkpoint`` (the latest, read on ``conn``); None if none yet.

        Call with ``lock`` held.
        """
        key = str(path.resolve())
        cached = self._stores.get(key)
        if cached is not None and not _same_store(conn, cached):
            cached = None
        stale = cached is not None and cached.checkpoint_id != checkpoint.id
        if stale and not _refresh(conn, cached, checkpoint):
            cached = None
        if cached is None:
            cached = _load(conn, checkpoint)
        if cached is None:
            self._stores.pop(key, None)
            return None
        self._stores[key] = cached
        self._stores.move_to_end(key)
        while len(self._stores) > MAX_STORES:
            self._stores.popitem(last=False)
        return cached


def _same_store(conn: sqlite3.Connection, cached: ItemRows) -> bool:
    """Whether the cached checkpoint is still in this file, as it was (not a new store)."""
    row = conn.execute(
        "SELECT time FROM checkpoints WHERE id = ?", [cached.checkpoint_id]
    ).fetchone()
    has_rows = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE name IN ('item_rows', 'item_segments')"
    ).fetchone()
    return row is not None and row[0] == cached.checkpoint_time and has_rows is not None


def _load(conn: sqlite3.Connection, checkpoint: Checkpoint) -> ItemRows | None:
    rule = queries.score_rule(conn, checkpoint.id)
    state = queries.item_state(conn, rule)
    if state is None:
        return None
    factors, bias, counts = state
    return ItemRows(checkpoint.id, checkpoint.time, rule, factors, bias, counts)


def _refresh(conn: sqlite3.Connection, cached: ItemRows, checkpoint: Checkpoint) -> bool:
    """Apply the rows written after the cached checkpoint; False if they do not fit."""
    rule = queries.score_rule(conn, checkpoint.id)
    if rule != cached.rule:
        return False  # another model's rows: read them all
    indices, factors, bias, counts = queries.item_rows_since(conn, cached.checkpoint_id, rule)
    if len(indices):
        if rule == "session":
            # Stored without their unused slots: lay both out alike.
            slots = (max(factors.shape[1], cached.factors.shape[1]) - N_STAGES) // 2
            cached.factors = _widened(cached.factors, slots)
            factors = _widened(factors, slots)
        if factors.shape[1] != cached.factors.shape[1]:
            return False
        n = max(len(cached.bias), int(indices.max()) + 1)
        if n > len(cached.bias):
            cached.factors = _grown(cached.factors, n)
            cached.bias = _grown(cached.bias, n)
            cached.counts = _grown(cached.counts, n)
        cached.factors[indices] = factors
        cached.bias[indices] = bias
        cached.counts[indices] = counts
    cached.checkpoint_id, cached.checkpoint_time = checkpoint.id, checkpoint.time
    return True


def _widened(rows: np.ndarray, slots: int) -> np.ndarray:
    if rows.shape[1] == N_STAGES + 2 * slots:
        return rows
    return widen_session_rows(rows, slots)


def _grown(array: np.ndarray, n: int) -> np.ndarray:
    grown = np.zeros((n, *array.shape[1:]), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


ITEM_CACHE = ItemCache()
