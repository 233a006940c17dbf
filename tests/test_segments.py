"""Rows and histories kept as packed segments read back exactly as written, through merges."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from storage import _histories as histories
from storage import _segments as segments
from storage._session_rows import widen_session_rows
from storage.ranking import N_STAGES
from storage.writer import StoreWriter


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 16 indices, merged after 4 deltas: a few writes exercise every path."""
    monkeypatch.setattr(segments, "CHUNK", 16)
    monkeypatch.setattr(segments, "MAX_DELTAS", 4)
    monkeypatch.setattr(segments, "MERGE_BUDGET", 1000)  # every chunk due is merged at once


def _store(tmp_path) -> sqlite3.Connection:
    StoreWriter(tmp_path / "reco.db").close()  # migrated
    return sqlite3.connect(tmp_path / "reco.db")


def _session_rows(rng, n: int, slots: int) -> np.ndarray:
    """Rows of the "session" layout, each with its own number of used slots."""
    rows = np.zeros((n, N_STAGES + 2 * slots), dtype=np.float32)
    rows[:, :N_STAGES] = rng.integers(0, 5, (n, N_STAGES))
    for row, used in zip(rows, rng.integers(0, slots + 1, n).tolist(), strict=True):
        row[N_STAGES : N_STAGES + used] = rng.integers(0, 99, used)
        row[N_STAGES + slots : N_STAGES + slots + used] = rng.integers(1, 9, used)
    return rows


@pytest.mark.parametrize("rule", ["dot", "session"])
def test_rows_read_back_as_last_written_through_deltas_and_merges(small_chunks, tmp_path, rule):
    conn = _store(tmp_path)
    # Deltas were written, and merges kept every chunk's below the limit.
    assert 0 < _check_rows(conn, rule) < segments.MAX_DELTAS


@pytest.mark.parametrize("rule", ["dot", "session"])
def test_rows_read_back_when_written_in_many_packing_groups(
    small_chunks, tmp_path, monkeypatch, rule
):
    monkeypatch.setattr(segments, "PACK_ROWS", 20)  # a group ends every chunk or two
    conn = _store(tmp_path)
    assert _check_rows(conn, rule) > 0


def test_rows_read_back_when_no_merge_fits_the_budget(small_chunks, tmp_path, monkeypatch):
    monkeypatch.setattr(segments, "MERGE_BUDGET", 0)  # chunks due keep getting deltas
    conn = _store(tmp_path)
    # No merge ran: some chunk went past the deltas that would have merged it.
    assert _check_rows(conn, "session") > segments.MAX_DELTAS


def _check_rows(conn: sqlite3.Connection, rule: str) -> int:
    """Write rows over many checkpoints; after each, every way of reading them agrees.

    Returns the most deltas a chunk had at once.
    """
    rng = np.random.default_rng(5)
    width = N_STAGES + 2 * 6 if rule == "session" else 4
    truth = np.zeros((0, width), dtype=np.float32)
    scalars_truth = np.zeros((0, 2), dtype=np.float32)
    n = most_deltas = 0
    for checkpoint_id in range(1, 40):
        # New indices arrive, always written (as the engine's are), and some old ones change.
        old, n = n, n + int(rng.integers(0, 9))
        changed = rng.choice(max(old, 1), size=min(old, 12), replace=False)
        touched = np.union1d(changed, np.arange(old, n)).astype(np.int64)
        if checkpoint_id % 13 == 0:
            touched = np.arange(n, dtype=np.int64)  # a full write now and then
        rows = (
            _session_rows(rng, len(touched), 6)
            if rule == "session"
            else rng.random((len(touched), width)).astype(np.float32)
        )
        scalars = rng.random((len(touched), 2)).astype(np.float32)
        truth = np.vstack([truth, np.zeros((n - len(truth), width), np.float32)])
        scalars_truth = np.vstack(
            [scalars_truth, np.zeros((n - len(scalars_truth), 2), np.float32)]
        )
        truth[touched], scalars_truth[touched] = rows, scalars
        with conn:
            segments.write(
                conn,
                segments.ITEMS,
                rule,
                checkpoint_id,
                segments.Rows(touched, rows, scalars),
                n,
            )
        stored = segments.read_all(conn, segments.ITEMS, rule, n)
        np.testing.assert_array_equal(_widened(stored.rows, width), truth)
        np.testing.assert_array_equal(stored.scalars, scalars_truth)
        for index in rng.choice(n, size=min(n, 5), replace=False).tolist():
            row = segments.read_row(conn, segments.ITEMS, rule, index)
            np.testing.assert_array_equal(_widened(row[None, :], width)[0], truth[index])
        deltas = conn.execute(
            f"SELECT MAX(c) FROM (SELECT COUNT(*) AS c FROM {segments.ITEMS} "  # noqa: S608
            "WHERE base = 0 GROUP BY chunk)"
        ).fetchone()[0]
        most_deltas = max(most_deltas, deltas or 0)
    return most_deltas


def test_rows_written_since_a_checkpoint_bring_a_copy_up_to_date(small_chunks, tmp_path):
    conn = _store(tmp_path)
    rng = np.random.default_rng(8)
    n = 60
    with conn:
        segments.write(
            conn,
            segments.ITEMS,
            "dot",
            1,
            segments.Rows(
                np.arange(n), rng.random((n, 3), dtype=np.float32), np.ones((n, 2), np.float32)
            ),
            n,
        )
    copy = segments.read_all(conn, segments.ITEMS, "dot", n)
    for checkpoint_id in range(2, 30):
        touched = np.sort(rng.choice(n, size=7, replace=False)).astype(np.int64)
        with conn:
            segments.write(
                conn,
                segments.ITEMS,
                "dot",
                checkpoint_id,
                segments.Rows(
                    touched, rng.random((7, 3), dtype=np.float32), rng.random((7, 2), np.float32)
                ),
                n,
            )
        fresh = segments.read_since(conn, segments.ITEMS, "dot", checkpoint_id - 1)
        copy.rows[fresh.indices], copy.scalars[fresh.indices] = fresh.rows, fresh.scalars
        stored = segments.read_all(conn, segments.ITEMS, "dot", n)
        np.testing.assert_array_equal(copy.rows, stored.rows)
        np.testing.assert_array_equal(copy.scalars, stored.scalars)


def test_histories_keep_the_latest_add_or_removal_of_each_item(small_chunks, tmp_path):
    conn = _store(tmp_path)
    rng = np.random.default_rng(3)
    truth: dict[tuple[int, int], tuple[float, int]] = {}
    seq = 0
    for checkpoint_id in range(1, 50):
        added: dict[tuple[int, int], tuple[float, int]] = {}
        removed: set[tuple[int, int]] = set()
        for _ in range(int(rng.integers(1, 30))):
            pair = (int(rng.integers(0, 70)), int(rng.integers(0, 12)))
            if pair in truth and rng.random() < 0.3:
                removed.add(pair)
                added.pop(pair, None)
            else:
                seq += 1
                added[pair] = (float(seq) / 10, seq)
                removed.discard(pair)
        for pair in removed:
            truth.pop(pair, None)
        truth.update(added)
        with conn:
            histories.write(
                conn,
                checkpoint_id,
                histories.records([(*pair, *value) for pair, value in added.items()]),
                histories.pairs(sorted(removed)),
            )
        expected = sorted(truth.items(), key=lambda kv: (kv[0][0], kv[1][1]))
        assert histories.read_all(conn).tolist() == [(*p, *v) for p, v in expected]
        for user in (0, 17, 69):
            mine = [(*p, *v) for p, v in expected if p[0] == user]
            assert histories.read_user(conn, user).tolist() == mine


def _widened(rows: np.ndarray, width: int) -> np.ndarray:
    """Rows padded with zero columns (or zero slots, for "session" rows) to ``width``."""
    if rows.shape[1] == width:
        return rows
    return widen_session_rows(rows, (width - N_STAGES) // 2)
