"""The store under concurrent use: readers in other processes, a read-only read path, bounded size.

A torn read is one where, inside a single read transaction, the latest
checkpoint disagrees with the rest of the store: its user or item count with
the users/items tables, its id with the newest item segment, the item rows
with its item count, its rejected total with the rejected_events table,
its consumed offsets with its received total, or a history row points past
the users or items it knows. A reader sees one whole checkpoint or the one
before; never a mix.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

import storage._connection
from engine.processing.processor import ProcessorConfig, StreamProcessor
from engine.worker.checkpointer import MAX_PENDING, Checkpointer, CheckpointFailed
from storage import StoreReader, StoreWriter
from storage import _histories as histories
from storage import _queries as queries
from storage._connection import connect_readonly
from tests.support.messages import KnownStream
from tests.support.paths import REPO
from tests.support.stores import latest
from tests.support.topics import PacedProducer
from tests.support.workers import Worker, engine_env_with, wait_for

_spawn = multiprocessing.get_context("spawn")


def consistent_read(db: Path) -> str | None:
    """Read the store in one transaction, as StoreReader does; describe any tear, or None."""
    conn = connect_readonly(db)
    try:
        conn.execute("BEGIN")
        checkpoint = queries.latest_checkpoint(conn)
        if checkpoint is None:
            return None
        users = conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]
        items = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        item_state = queries.item_state(conn, queries.score_rule(conn, checkpoint.id))
        item_rows = 0 if item_state is None else len(item_state[1])
        newest_row = conn.execute("SELECT MAX(checkpoint_id) FROM item_segments").fetchone()[0]
        rejected = conn.execute("SELECT COUNT(*) FROM rejected_events").fetchone()[0]
        records = histories.read_all(conn)
        max_user = int(records["user"].max()) if len(records) else None
        max_item = int(records["item"].max()) if len(records) else None
        conn.execute("COMMIT")
    finally:
        conn.close()
    problems = []
    if users != checkpoint.users or items != checkpoint.items:
        problems.append(
            f"tables hold {users} users/{items} items, checkpoint says "
            f"{checkpoint.users}/{checkpoint.items}"
        )
    if item_rows != items:
        problems.append(f"{item_rows} item rows, but {items} items")
    if newest_row is not None and newest_row > checkpoint.id:
        problems.append(f"an item row of checkpoint {newest_row} is newer than {checkpoint.id}")
    if rejected != checkpoint.totals.rejected:
        problems.append(f"{rejected} rejected rows, total says {checkpoint.totals.rejected}")
    if sum(checkpoint.offsets.values()) != checkpoint.totals.received:
        problems.append(f"offsets {checkpoint.offsets} vs received {checkpoint.totals.received}")
    if max_user is not None and (max_user >= users or max_item >= items):
        problems.append("history points past the users or items")
    return "; ".join(problems) or None


def _reader(db: str, stop, results, counter) -> None:
    """A dashboard-like process: whole-store checks and the public read API, in a loop."""
    reads = errors = 0
    torn = []
    reader = StoreReader(db)
    while not stop.is_set():
        try:
            tear = consistent_read(Path(db))
            if tear:
                torn.append(tear)
            if reads % 5 == 0:
                reader.latest_checkpoint()
                reader.recommend("u1", 10)
                reader.metrics(max_points=50)
                reader.rejected_events(limit=20)
            reads += 1
            with counter.get_lock():
                counter.value += 1
        except Exception as exc:
            errors += 1
            torn.append(f"error: {exc!r}")
    results.put((reads, errors, torn[:5]))


def _write_checkpoints(db: Path, stop: threading.Event, written: list[int]) -> None:
    processor = StreamProcessor(ProcessorConfig())
    stream = KnownStream(seed=31, bad_share=0.05)
    writer = StoreWriter(db, keep_rejected=10**9)
    offset = 0
    try:
        while not stop.is_set():
            for _ in range(150):
                processor.process(stream.next()[0], 0, offset)
                offset += 1
            written.append(writer.write_checkpoint(processor.checkpoint()))
    finally:
        writer.close()


def test_readers_in_other_processes_never_see_a_torn_checkpoint(tmp_path):
    db = tmp_path / "reco.db"
    stop_writing, written = threading.Event(), []
    writer = threading.Thread(target=_write_checkpoints, args=(db, stop_writing, written))
    writer.start()
    wait_for(lambda: written, 30, "the first checkpoint")
    stop_reading, results, counter = _spawn.Event(), _spawn.Queue(), _spawn.Value("i", 0)
    readers = [
        _spawn.Process(target=_reader, args=(str(db), stop_reading, results, counter))
        for _ in range(3)
    ]
    for process in readers:
        process.start()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and (counter.value < 1200 or len(written) < 100):
            time.sleep(0.2)
    finally:
        stop_reading.set()
        outcomes = [results.get(timeout=60) for _ in readers]
        for process in readers:
            process.join(30)
        stop_writing.set()
        writer.join(60)
    reads = sum(r for r, _, _ in outcomes)
    errors = sum(e for _, e, _ in outcomes)
    torn = [t for _, _, ts in outcomes for t in ts]
    print(f"{reads} reads in 3 processes during {len(written)} checkpoints")
    assert errors == 0, torn
    assert torn == []
    assert reads >= 1000
    assert len(written) >= 100


def _hold_a_read(db: str, holding, release, seen) -> None:
    conn = connect_readonly(db)
    conn.execute("BEGIN")
    seen.put(queries.latest_checkpoint(conn).id)
    holding.set()
    release.wait(120)
    seen.put(queries.latest_checkpoint(conn).id)  # the same snapshot all along
    conn.execute("COMMIT")
    conn.close()


def _store_with_checkpoints(db: Path, n: int = 1) -> tuple[StreamProcessor, StoreWriter]:
    processor = StreamProcessor(ProcessorConfig())
    stream = KnownStream(seed=8)
    writer = StoreWriter(db)
    for round_ in range(n):
        for offset in range(round_ * 500, (round_ + 1) * 500):
            processor.process(stream.next()[0], 0, offset)
        writer.write_checkpoint(processor.checkpoint())
    return processor, writer


def test_the_read_path_can_neither_write_nor_lock_the_engine_out(tmp_path):
    db = tmp_path / "reco.db"
    processor, writer = _store_with_checkpoints(db)

    conn = connect_readonly(db)
    for statement in (
        "INSERT INTO item_names (id, name) VALUES ('x', 'y')",
        "DELETE FROM checkpoints",
        "UPDATE users SET id = 'z'",
        "CREATE TABLE t (x)",
        "PRAGMA journal_mode=DELETE",
        "BEGIN IMMEDIATE",
    ):
        with pytest.raises(sqlite3.OperationalError):
            conn.execute(statement)
    conn.close()
    assert writer.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert StoreReader(db).latest_checkpoint().totals.received == 500

    # A reader process holds one snapshot open the whole time ...
    holding, release, seen = _spawn.Event(), _spawn.Event(), _spawn.Queue()
    holder = _spawn.Process(target=_hold_a_read, args=(str(db), holding, release, seen))
    holder.start()
    try:
        assert holding.wait(60)
        first_seen = seen.get(timeout=10)
        wal = db.with_name("reco.db-wal")
        # ... and the engine writes on regardless, as fast as it likes.
        stream = KnownStream(seed=12)
        for round_ in range(1, 6):
            for offset in range(round_ * 500, (round_ + 1) * 500):
                processor.process(stream.next()[0], 0, offset)
            last = writer.write_checkpoint(processor.checkpoint())
        assert holder.is_alive()
        held_wal = wal.stat().st_size
        assert held_wal > 0  # the WAL cannot be cut while that snapshot is in use
    finally:
        release.set()
        holder.join(30)
    assert seen.get(timeout=10) == first_seen < last
    writer.write_checkpoint(processor.checkpoint())
    assert wal.stat().st_size == 0  # ... and is cut at the next checkpoint after it ends

    # A reader killed in the middle of a read leaves no lock behind.
    holding, release = _spawn.Event(), _spawn.Event()
    holder = _spawn.Process(target=_hold_a_read, args=(str(db), holding, release, seen))
    holder.start()
    assert holding.wait(60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(30)
    writer.write_checkpoint(processor.checkpoint())
    assert wal.stat().st_size == 0
    writer.close()


def test_the_dashboard_only_ever_uses_the_read_only_path():
    for path in (REPO / "dashboard").rglob("*.py"):
        text = path.read_text()
        for forbidden in ("StoreWriter", "open_writable", "sqlite3", "put_item_names"):
            assert forbidden not in text, f"{path.relative_to(REPO)} uses {forbidden}"


def _lock_the_store(db: str, locked, release) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")  # another program holding the write lock
    locked.set()
    release.wait(120)
    conn.execute("ROLLBACK")
    conn.close()


def test_a_checkpoint_that_failed_to_write_is_written_before_the_next(tmp_path, monkeypatch):
    monkeypatch.setattr(storage._connection, "BUSY_TIMEOUT_MS", 200)
    monkeypatch.setattr("storage.writer.BUSY_TIMEOUT_MS", 200)
    db = tmp_path / "reco.db"
    checkpointer = Checkpointer(db, keep_snapshots=3, metrics_retention_s=86400)
    assert checkpointer.open() is None
    processor = StreamProcessor(ProcessorConfig())
    stream = KnownStream(seed=14, users=2000)
    offset = 0

    def feed(n):
        nonlocal offset
        for _ in range(n):
            processor.process(stream.next()[0], 0, offset)
            offset += 1

    feed(500)
    checkpointer.write_now(processor.checkpoint())
    locked, release = _spawn.Event(), _spawn.Event()
    locker = _spawn.Process(target=_lock_the_store, args=(str(db), locked, release))
    locker.start()
    try:
        assert locked.wait(60)
        feed(500)  # new users and items, carried only by this checkpoint's delta
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            checkpointer.write_now(processor.checkpoint())
        assert checkpointer.pending == 1
    finally:
        release.set()
        locker.join(30)
    feed(500)
    checkpointer.write_now(processor.checkpoint())
    assert checkpointer.pending == 0
    checkpointer.close()

    writer = StoreWriter(db)
    checkpoint, state = writer.latest()
    writer.close()
    assert checkpoint.totals.received == 1500 and checkpoint.offsets == {0: 1500}
    assert state.user_ids == processor.recommender.user_ids  # no delta went missing
    assert state.item_ids == processor.recommender.item_ids
    restored = StreamProcessor(ProcessorConfig())
    restored.restore(checkpoint, state)
    assert vars(restored.totals) == vars(processor.totals)


def test_a_store_that_keeps_refusing_stops_the_engine(tmp_path, monkeypatch):
    monkeypatch.setattr(storage._connection, "BUSY_TIMEOUT_MS", 50)
    monkeypatch.setattr("storage.writer.BUSY_TIMEOUT_MS", 50)
    db = tmp_path / "reco.db"
    checkpointer = Checkpointer(db, keep_snapshots=3, metrics_retention_s=86400)
    checkpointer.open()
    processor = StreamProcessor(ProcessorConfig())
    locked, release = _spawn.Event(), _spawn.Event()
    locker = _spawn.Process(target=_lock_the_store, args=(str(db), locked, release))
    locker.start()
    try:
        assert locked.wait(60)
        for _ in range(MAX_PENDING - 1):
            with pytest.raises(sqlite3.OperationalError):
                checkpointer.write_now(processor.checkpoint())
        with pytest.raises(CheckpointFailed, match="restart resumes from the last stored one"):
            checkpointer.write_now(processor.checkpoint())
    finally:
        release.set()
        locker.join(30)
        checkpointer.close()


# -- a long run ------------------------------------------------------------------------------

SOAK_S = float(os.environ.get("RELIABILITY_SOAK_SECONDS", "60"))


def _file_sizes(db: Path) -> tuple[int, int]:
    wal = db.with_name(db.name + "-wal")
    return db.stat().st_size, wal.stat().st_size if wal.exists() else 0


def _dashboard_like_reads(db: str, stop, results) -> None:
    reader, reads, errors = StoreReader(db), 0, 0
    while not stop.is_set():
        try:
            reader.latest_checkpoint()
            reader.metrics(max_points=200)
            reader.recommend("u1")
            reader.rejected_events(limit=100)
            reads += 1
        except Exception:
            errors += 1
        time.sleep(0.05)
    results.put((reads, errors))


@pytest.mark.slow
@pytest.mark.integration
def test_the_store_levels_off_over_a_soak_at_full_speed(engine_env, tmp_path):
    db = tmp_path / "reco.db"
    env = engine_env_with(
        engine_env,
        RECO_CHECKPOINT_INTERVAL=0.2,
        RECO_METRICS_RETENTION=SOAK_S / 4,
        RECO_KEEP_REJECTED=500,
    )
    # A fixed population of users and items, so the model itself stops growing
    # and whatever still grows is the store's own bookkeeping.
    producer = PacedProducer(
        env["RECO_BROKER"],
        env["RECO_TOPIC"],
        KnownStream(seed=41, users=100, items=40, uniform=True),
        20_000,
    )
    worker = Worker(env, tmp_path / "worker.log").start()
    producer.start()
    stop, results = _spawn.Event(), _spawn.Queue()
    reader = _spawn.Process(target=_dashboard_like_reads, args=(str(db), stop, results))
    samples = []
    try:
        # Checkpoints of a model with no item yet come first (the worker takes its
        # partitions meanwhile), and recommend() rightly says there is no model.
        wait_for(lambda: (c := latest(db)) and c.items, 60, "the first checkpoint with a model")
        reader.start()
        started = time.monotonic()
        while time.monotonic() < started + SOAK_S:
            assert worker.alive(), worker.output()[-3000:]
            samples.append((time.monotonic() - started, *_file_sizes(db), latest(db)))
            time.sleep(1)
    finally:
        stop.set()
        producer.stop()
        worker.stop_quietly()
        reader.join(30)
    reads, errors = results.get(timeout=10)

    def typical(start: float, end: float) -> float:
        """Median db + WAL size between two fractions of the run (the WAL comes and goes)."""
        sizes = sorted(d + w for t, d, w, _ in samples if start * SOAK_S <= t < end * SOAK_S)
        return sizes[len(sizes) // 2]

    second_quarter, last_quarter = typical(0.25, 0.5), typical(0.75, 1.0)
    db_at_half = next(d for t, d, _, _ in samples if t >= SOAK_S / 2)
    db_at_end = samples[-1][1]
    largest_wal = max(w for _, _, w, _ in samples)
    first, last = samples[0][3], samples[-1][3]
    print(
        f"soak {SOAK_S:.0f} s: {last.totals.received - first.totals.received} events, "
        f"{last.id - first.id} checkpoints; db {db_at_half / 1e6:.2f} MB at half time, "
        f"{db_at_end / 1e6:.2f} MB at the end; median db+WAL {second_quarter / 1e6:.2f} MB "
        f"in the 2nd quarter, {last_quarter / 1e6:.2f} MB in the last; largest WAL "
        f"{largest_wal / 1e6:.2f} MB; {reads} dashboard reads, {errors} errors"
    )
    assert errors == 0 and reads > 0
    assert last.id - first.id >= SOAK_S  # checkpoints kept coming (several a second)
    slack = 256 * 1024
    assert db_at_end <= db_at_half * 1.10 + slack
    assert last_quarter <= second_quarter * 1.10 + slack
    assert largest_wal < 16 * 1024 * 1024
