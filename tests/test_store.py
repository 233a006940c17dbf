"""The SQLite store: migrations, atomic checkpoints, pruning and the read API."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

from engine.settings import DEFAULT_MODEL
from storage import (
    NoCheckpoint,
    RejectedEvent,
    StoreCorrupt,
    StoreMissing,
    StoreReader,
    StoreWriter,
)
from tests.support.processors import feed, processor

EVENTS = [
    ("alice", "a"),
    ("alice", "b"),
    ("bob", "a"),
    ("bob", "c"),
    ("carol", "c"),
    ("alice", "c", 2),
    ("dave", "b"),
]


def _store_with_checkpoint(db_path, **writer_options):
    proc = processor()
    feed(proc, EVENTS)
    proc.process(b"{broken", 0, len(EVENTS))
    writer = StoreWriter(db_path, **writer_options)
    writer.write_checkpoint(proc.checkpoint())
    return proc, writer


def test_new_store_is_migrated_and_in_wal_mode(db_path):
    writer = StoreWriter(db_path)
    tables = set(writer.db.table_names())
    assert {
        "checkpoints",
        "model_snapshots",
        "users",
        "items",
        "user_segments",
        "item_segments",
        "history_segments",
        "rejected_events",
        "item_names",
    } <= tables
    assert writer.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    writer.close()
    # Opening again applies nothing twice.
    StoreWriter(db_path).close()


def test_reader_says_how_to_start_when_store_is_missing_or_empty(db_path):
    with pytest.raises(StoreMissing, match=r"start the engine with ./run.sh"):
        StoreReader(db_path).latest_checkpoint()
    StoreWriter(db_path).close()
    with pytest.raises(NoCheckpoint, match="no checkpoint"):
        StoreReader(db_path).latest_checkpoint()


def test_checkpoint_holds_counts_offsets_and_model(db_path):
    proc, writer = _store_with_checkpoint(db_path)
    checkpoint = StoreReader(db_path).latest_checkpoint()
    assert checkpoint.totals.received == len(EVENTS) + 1
    assert checkpoint.totals.accepted == len(EVENTS)
    assert checkpoint.totals.positive == len(EVENTS) - 1  # rating 2 is below min_rating 4
    assert checkpoint.totals.rejected == 1
    assert checkpoint.offsets == {0: len(EVENTS) + 1}
    assert (checkpoint.users, checkpoint.items) == (4, 3)
    assert checkpoint.model == DEFAULT_MODEL
    rejected = StoreReader(db_path).rejected_events()
    assert [(r.reason, r.offset, r.payload) for r in rejected] == [
        ("not valid JSON", len(EVENTS), "{broken")
    ]


def test_store_recommendations_match_the_live_model(db_path):
    proc, writer = _store_with_checkpoint(db_path)
    reader = StoreReader(db_path)
    for user in ("alice", "bob", "carol", "dave"):
        stored = reader.recommend(user, n=3)
        index = proc.recommender.user_index(user)
        scores = proc.recommender.scores(index)
        seen = set(proc.history.items(index))
        live = sorted(
            (i for i in range(proc.recommender.n_items) if i not in seen),
            key=lambda i: (-scores[i], i),
        )[:3]
        assert [item.item for item in stored.items] == [proc.recommender.item_ids[i] for i in live]
        assert not stored.fallback
        assert not {item.item for item in stored.items} & {
            proc.recommender.item_ids[i] for i in seen
        }


def test_unknown_user_gets_flagged_popularity_fallback(db_path):
    _store_with_checkpoint(db_path)
    result = StoreReader(db_path).recommend("nobody-knows-me", n=2)
    assert result.fallback
    # a, b and c all have two positive events; ties go to the first seen.
    assert [item.item for item in result.items] == ["a", "b"]


def test_history_is_newest_first_with_names(db_path):
    proc, writer = _store_with_checkpoint(db_path)
    writer.put_item_names({"a": "Alpha", "b": "Beta"})
    history = StoreReader(db_path).history("alice")
    assert [(h.item, h.name) for h in history] == [("b", "Beta"), ("a", "Alpha")]


@pytest.mark.parametrize("user", ["", "   ", "x" * 10_000, "a\x00b"])
def test_bad_user_ids_are_refused_with_a_message(db_path, user):
    _store_with_checkpoint(db_path)
    with pytest.raises(ValueError):
        StoreReader(db_path).recommend(user)


@pytest.mark.parametrize("user", ["'; DROP TABLE users; --", 'a"b', "ユーザー", "%", "_"])
def test_odd_user_ids_are_just_unknown(db_path, user):
    _store_with_checkpoint(db_path)
    assert StoreReader(db_path).recommend(user).fallback
    assert StoreReader(db_path).user_ids(prefix=user) == []


def test_old_metrics_and_rejections_are_pruned_and_items_are_rows(db_path):
    proc = processor()
    writer = StoreWriter(db_path, keep_snapshots=2, metrics_retention_s=100, keep_rejected=3)
    for step in range(6):
        feed(proc, EVENTS, start_offset=step * 100)
        proc.process(b"bad", 0, step * 100 + 50)
        writer.write_checkpoint(proc.checkpoint(now=1000.0 + 60 * step))
    db = writer.db
    # Every item changed in every interval: its chunk's one segment is replaced
    # each time, so nothing grows with the checkpoints.
    assert db.execute("SELECT COUNT(*), SUM(n) FROM item_segments").fetchone() == (1, 3)
    assert db.execute("SELECT COUNT(*) FROM model_snapshots").fetchone()[0] == 0
    # Checkpoints older than 100 s before the last (t=1300) are gone.
    assert [row[0] for row in db.execute("SELECT time FROM checkpoints ORDER BY id")] == [
        1240.0,
        1300.0,
    ]
    assert db.execute("SELECT COUNT(*) FROM rejected_events").fetchone()[0] == 3
    assert StoreReader(db_path).latest_checkpoint().totals.rejected == 6


def test_metrics_are_downsampled_for_charts(db_path):
    proc = processor()
    writer = StoreWriter(db_path)
    for step in range(50):
        feed(proc, EVENTS[:2], start_offset=step * 2)
        writer.write_checkpoint(proc.checkpoint(now=1000.0 + step))
    reader = StoreReader(db_path)
    assert len(reader.metrics()) == 50
    merged = reader.metrics(max_points=10)
    assert len(merged) <= 10
    assert sum(point.received for point in merged) == 100
    assert reader.metrics(since=1040.0)[0].time >= 1040.0
    with pytest.raises(ValueError, match="max_points"):
        reader.metrics(max_points=1)


def test_checkpoint_is_all_or_nothing(db_path):
    proc, writer = _store_with_checkpoint(db_path)
    feed(proc, [("erin", "z")], start_offset=100)
    write = proc.checkpoint()
    # A payload SQLite cannot bind makes the last insert fail, after everything else.
    write.rejected.append(RejectedEvent(1.0, "bad", 0, 0, payload=object()))
    with pytest.raises(sqlite3.Error):
        writer.write_checkpoint(write)
    reader = StoreReader(db_path)
    assert reader.latest_checkpoint().totals.received == len(EVENTS) + 1
    assert reader.recommend("erin").fallback  # the new user did not half-land


def test_readers_see_whole_checkpoints_while_the_writer_works(db_path):
    proc, writer = _store_with_checkpoint(db_path)
    reader = StoreReader(db_path)
    errors: list[Exception] = []
    stop = threading.Event()

    def read_forever():
        while not stop.is_set():
            try:
                checkpoint = reader.latest_checkpoint()
                # Totals and offsets of one checkpoint always agree.
                assert checkpoint.offsets[0] == checkpoint.totals.received
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=read_forever) for _ in range(2)]
    for thread in threads:
        thread.start()
    for step in range(1, 40):
        feed(proc, EVENTS, start_offset=step * len(EVENTS) + 1)
        writer.write_checkpoint(proc.checkpoint())
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []


def test_foreign_or_corrupt_files_are_refused_by_name(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StoreCorrupt, match="garbage.db"):
        StoreWriter(garbage)
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreCorrupt, match="foreign.db"):
        StoreWriter(foreign)
    assert sqlite3.connect(foreign).execute("SELECT COUNT(*) FROM invoices").fetchone() == (0,)


def test_reader_cannot_write(db_path):
    _store_with_checkpoint(db_path)
    from storage._connection import connect_readonly

    conn = connect_readonly(db_path)
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("DELETE FROM checkpoints")
    conn.close()
    assert np.isfinite(StoreReader(db_path).latest_checkpoint().time)
