"""The store's side of the online loop: impressions and clicks per interval, item names."""

from __future__ import annotations

import sqlite3

from sqlite_utils import Database

from storage import OnlineCounts, StoreReader, StoreWriter
from storage._schema import migrations
from tests.support.processors import feed, processor


def write_intervals(db_path, intervals, start=1_000_000.0, step=5.0, **writer_options):
    """One checkpoint per (model impressions, clicks, baseline impressions, clicks)."""
    proc = processor()
    feed(proc, [("ann", "a"), ("bob", "b")])
    writer = StoreWriter(db_path, **writer_options)
    for i, (mi, mc, bi, bc) in enumerate(intervals):
        write = proc.checkpoint(now=start + i * step)
        write.online = [OnlineCounts("model", mi, mc), OnlineCounts("baseline", bi, bc)]
        writer.write_checkpoint(write)
    return writer


def test_online_counts_are_written_with_their_checkpoint_and_read_per_variant(db_path):
    write_intervals(db_path, [(10, 3, 2, 0), (20, 8, 4, 1)]).close()
    points = StoreReader(db_path).online_metrics()
    assert [(p.variant, p.impressions, p.clicks) for p in points] == [
        ("baseline", 2, 0),
        ("model", 10, 3),
        ("baseline", 4, 1),
        ("model", 20, 8),
    ]
    last_model = points[-1]
    assert last_model.ctr == 0.4
    assert last_model.impressions_per_s == 20 / last_model.interval_s
    assert StoreReader(db_path).online_metrics(since=1_000_004.0)[0].impressions == 4


def test_many_intervals_are_merged_into_few_points_with_their_sums(db_path):
    write_intervals(db_path, [(10, 1, 5, 1)] * 40).close()
    points = StoreReader(db_path).online_metrics(max_points=8)
    model = [p for p in points if p.variant == "model"]
    assert len(model) <= 8
    assert sum(p.impressions for p in model) == 400
    assert sum(p.clicks for p in points if p.variant == "baseline") == 40


def test_online_counts_are_pruned_with_the_metrics(db_path):
    writer = write_intervals(db_path, [(1, 0, 1, 0)] * 5, step=100.0, metrics_retention_s=150.0)
    writer.close()
    times = {p.time for p in StoreReader(db_path).online_metrics()}
    assert times == {1_000_300.0, 1_000_400.0}


def test_a_store_the_engine_has_not_migrated_yet_reads_as_no_impressions(db_path):
    write_intervals(db_path, [(1, 1, 1, 1)]).close()
    conn = sqlite3.connect(db_path)
    conn.execute("DROP TABLE online_metrics")  # as a store written before this feature
    conn.commit()
    conn.close()
    assert StoreReader(db_path).online_metrics() == []


def test_migrations_are_applied_in_their_numbered_order():
    names = [m.name for m in migrations.pending(Database(memory=True))]
    assert names[0] == "0001_initial"
    assert "0010_online_metrics" in names and names == sorted(names)


def test_item_names_are_read_incrementally_with_a_cursor(db_path):
    writer = StoreWriter(db_path)
    writer.put_item_names({"a": "Alpha", "b": "Beta"})
    names, cursor = writer.item_names()
    assert names == {"a": "Alpha", "b": "Beta"}
    assert writer.item_names(cursor) == ({}, cursor)
    writer.put_item_names({"b": "Beta (1999)", "c": "Gamma"})
    changed, later = writer.item_names(cursor)
    assert changed == {"b": "Beta (1999)", "c": "Gamma"} and later > cursor
    writer.close()
