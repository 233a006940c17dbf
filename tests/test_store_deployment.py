"""Partition rows in the store, and a deployment's figures read from several stores."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import fields
from pathlib import Path

import pytest

from storage import (
    NoCheckpoint,
    StoreError,
    StoreListError,
    StoreMissing,
    StoreReader,
    StoreWriter,
    Totals,
    read_deployment,
    store_paths,
)
from tests.support.stores import (
    WorkerCheckpoint,
    counts,
    partition,
    write_deployment,
    write_empty_store,
    write_store,
    write_worker_store,
)


def total(states) -> Totals:
    states = list(states)
    return Totals(
        **{f.name: sum(getattr(s.totals, f.name) for s in states) for f in fields(Totals)}
    )


def plain_sum(totals) -> Totals:
    return Totals(**{f.name: sum(getattr(t, f.name) for t in totals) for f in fields(Totals)})


def test_a_checkpoint_keeps_its_partitions_and_worker(tmp_path):
    db = tmp_path / "reco.db"
    states = [partition(0, 40, 40, lag=7), partition(3, 12, 12)]
    write_worker_store(db, "10.0.0.5:6066", [WorkerCheckpoint(time.time(), counts(52), states)])

    checkpoint = StoreReader(db).latest_checkpoint()
    assert checkpoint.worker == "10.0.0.5:6066"
    assert checkpoint.partitions == states
    assert checkpoint.totals == counts(52)


def test_a_store_without_partition_rows_reads_as_before(tmp_path):
    facts = write_store(tmp_path / "reco.db", checkpoints=3)
    reader = StoreReader(facts.path)
    checkpoint = reader.latest_checkpoint()
    assert checkpoint.partitions == [] and checkpoint.worker is None
    assert reader.partitions() == [] and reader.partition_history() == []


def test_a_store_of_before_migration_0013_reads_without_partitions(tmp_path):
    facts = write_store(tmp_path / "reco.db", checkpoints=2)
    with sqlite3.connect(facts.path) as conn:
        conn.execute("DROP TABLE checkpoint_partitions")
        conn.execute("ALTER TABLE checkpoints DROP COLUMN worker")
        conn.execute("ALTER TABLE checkpoints DROP COLUMN shared")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = '0013_checkpoint_partitions'")
    reader = StoreReader(facts.path)
    assert reader.latest_checkpoint().partitions == [] and reader.partitions() == []
    StoreWriter(facts.path).close()  # the engine migrates it
    assert StoreReader(facts.path).latest_checkpoint().worker is None


def test_each_partitions_most_advanced_state_wins_within_a_store(tmp_path):
    db = tmp_path / "reco.db"
    now = time.time()
    write_worker_store(
        db,
        "w",
        [
            WorkerCheckpoint(now - 10, counts(90), [partition(0, 60, 60), partition(1, 30, 30)]),
            WorkerCheckpoint(now - 5, counts(120), [partition(0, 90, 90)]),  # 1 moved away
        ],
    )
    best = {p.state.partition: p for p in StoreReader(db).partitions()}
    assert best[0].state.offset == 90 and best[0].time == pytest.approx(now - 5)
    assert best[1].state.offset == 30 and best[1].time == pytest.approx(now - 10)


def test_retention_prunes_partition_rows_with_their_checkpoints(tmp_path):
    db = tmp_path / "reco.db"
    now = time.time()
    old = [
        WorkerCheckpoint(now - 3600, counts(10), [partition(0, 10, 10)]),
        WorkerCheckpoint(now - 60, counts(20), [partition(0, 20, 20)]),
    ]
    write_worker_store(db, "w", old)
    assert [p.state.offset for p in StoreReader(db).partition_history()] == [10, 20]

    latest = WorkerCheckpoint(now, counts(30), [partition(0, 30, 30)])
    write_worker_store(db, "w", [latest], metrics_retention_s=600)
    assert [p.state.offset for p in StoreReader(db).partition_history()] == [20, 30]


def test_partition_history_merges_into_buckets_when_long(tmp_path):
    db = tmp_path / "reco.db"
    now = time.time()
    write_worker_store(
        db,
        "w",
        [
            WorkerCheckpoint(now - 5 * (9 - i), counts(10 * i), [partition(0, i, 10 * i, lag=i)])
            for i in range(10)
        ],
    )
    points = StoreReader(db).partition_history(max_points=4)
    assert 2 <= len(points) <= 4
    assert points[-1].state.offset == 9 and points[-1].state.lag == 9


def test_the_deployment_counts_each_partition_once_at_its_newest_state(tmp_path):
    facts = write_deployment(tmp_path / "stores")
    deployment = read_deployment(facts.stores)

    expected = total(state for _, state in facts.newest.values())
    assert deployment.totals == expected
    assert deployment.totals != plain_sum(facts.own)  # the replayed events count once
    assert [p.partition for p in deployment.partitions] == sorted(facts.newest)
    for view in deployment.partitions:
        store, state = facts.newest[view.partition]
        assert (view.store, view.offset, view.lag) == (str(store), state.offset, state.lag)
        assert view.worker == facts.workers[facts.stores.index(store)] and view.owned
    assert deployment.recall_at_10 == expected.model_hits / expected.evaluated
    assert [w.worker for w in deployment.workers] == facts.workers
    assert [w.totals for w in deployment.workers] == facts.own
    assert deployment.workers[0].partitions == [0, 1]
    assert deployment.workers[1].partitions == sorted(facts.newest)


def test_only_workers_still_checkpointing_add_to_the_deployments_rate(tmp_path):
    facts = write_deployment(tmp_path / "stores")
    deployment = read_deployment(facts.stores)
    rates = [w.events_per_s for w in deployment.workers]
    assert rates == [r / 5.0 for r in facts.interval_received]
    assert deployment.events_per_s == rates[1]  # the first worker stopped a minute before


def test_a_store_without_partition_rows_adds_its_own_totals(tmp_path):
    facts = write_deployment(tmp_path / "stores")
    legacy = write_store(tmp_path / "legacy.db", checkpoints=2)
    deployment = read_deployment([*facts.stores, legacy.path])

    own = StoreReader(legacy.path).latest_checkpoint().totals
    newest = total(state for _, state in facts.newest.values())
    assert deployment.totals == plain_sum([newest, own])
    assert [w.counted_by_partition for w in deployment.workers] == [True, True, False]


def test_a_store_without_a_checkpoint_waits_and_a_missing_one_is_named(tmp_path):
    facts = write_deployment(tmp_path / "stores")
    empty = write_empty_store(tmp_path / "new.db")
    deployment = read_deployment([*facts.stores, empty])
    assert deployment.waiting == [str(empty)] and len(deployment.workers) == 2

    with pytest.raises(NoCheckpoint, match="new.db"):
        read_deployment([empty])
    with pytest.raises(StoreMissing, match="gone.db"):
        read_deployment([*facts.stores, tmp_path / "gone.db"])
    (tmp_path / "junk.db").write_text("not a store")
    with pytest.raises(StoreError, match="junk.db"):
        read_deployment([*facts.stores, tmp_path / "junk.db"])


def test_store_paths_reads_a_path_a_list_or_a_folder(tmp_path):
    facts = write_deployment(tmp_path / "stores")
    assert store_paths("data/reco.db") == [Path("data/reco.db")]  # need not exist yet
    listed = ",".join(str(p) for p in facts.stores)
    assert store_paths(listed) == facts.stores
    assert store_paths(f" {facts.stores[0]} , {facts.stores[1]} ") == facts.stores
    assert store_paths(tmp_path / "stores") == sorted(facts.stores)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("a.db,,b.db", "empty item"),
        ("a.db,", "empty item"),
        ("a.db,a.db", "named twice"),
        ("{folder},a.db", "is a folder"),
        ("{empty}", "holds no *.db store"),
        ("  ", "no store named"),
    ],
)
def test_store_paths_says_what_to_fix(tmp_path, spec, says):
    (tmp_path / "empty").mkdir()
    spec = spec.format(folder=tmp_path, empty=tmp_path / "empty")
    with pytest.raises(StoreListError, match=says.replace("*", r"\*")):
        store_paths(spec)
