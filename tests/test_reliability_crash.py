"""Crashes: SIGKILL at random moments (also mid-checkpoint), SIGTERM, interrupted and corrupt stores.

The guarantee under test: the model state is exactly-once from the last
checkpoint. A restarted engine restores the latest complete checkpoint and
seeks to the offsets it carries, so every event counts once however often the
worker dies.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from engine.processing.processor import ProcessorConfig, StreamProcessor
from engine.settings import DEFAULT_MODEL, MODELS
from storage import StoreReader, StoreWriter
from tests.support.commands import engine
from tests.support.messages import KnownStream
from tests.support.paths import PYTHON, REPO
from tests.support.processors import processor_rankings
from tests.support.stores import latest, panel_rankings, wal_frames
from tests.support.topics import PacedProducer
from tests.support.workers import Worker, engine_env_with, freeze, thaw, wait_for

PANEL = [f"u{i}" for i in range(1, 21)]


def _restored(db: Path, model: str = DEFAULT_MODEL) -> StreamProcessor:
    """A processor restored from the store the way a restarting engine does it."""
    writer = StoreWriter(db)
    try:
        checkpoint, state = writer.latest()
    finally:
        writer.close()
    processor = StreamProcessor(ProcessorConfig(model=model))
    processor.restore(checkpoint, state)
    return processor


@pytest.mark.parametrize("model", MODELS)
def test_every_model_ranks_after_a_restore_as_it_did_at_the_checkpoint(tmp_path, model):
    db = tmp_path / "reco.db"
    stream = KnownStream(seed=3)
    live = StreamProcessor(ProcessorConfig(model=model))
    for offset in range(1500):
        live.process(stream.next()[0], 0, offset)
    writer = StoreWriter(db)
    writer.write_checkpoint(live.checkpoint())
    writer.close()
    restored = _restored(db, model)
    assert restored.recommender.model == model
    rankings = processor_rankings(live, PANEL)
    assert len(rankings) >= 10
    assert processor_rankings(restored, PANEL) == rankings
    assert vars(restored.totals) == vars(live.totals) and restored.offsets == {0: 1500}


def test_a_restored_engine_ranks_and_continues_exactly_like_one_never_stopped(tmp_path):
    db = tmp_path / "reco.db"
    stream = KnownStream(seed=3)
    messages = [stream.next()[0] for _ in range(3000)]
    uninterrupted = StreamProcessor(ProcessorConfig())
    for offset, message in enumerate(messages[:2000]):
        uninterrupted.process(message, 0, offset)
    writer = StoreWriter(db)
    writer.write_checkpoint(uninterrupted.checkpoint())
    writer.close()
    at_checkpoint = processor_rankings(uninterrupted, PANEL)

    restored = _restored(db)
    assert restored.offsets == {0: 2000}
    assert processor_rankings(restored, PANEL) == at_checkpoint
    # What a reader sees of the restored model equals what it saw of the original.
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    writer = StoreWriter(copy)
    writer.write_checkpoint(restored.checkpoint())
    writer.close()
    assert panel_rankings(copy, PANEL) == panel_rankings(db, PANEL)

    # Resuming at the checkpoint's offset reproduces the uninterrupted run exactly.
    for offset, message in enumerate(messages[2000:], start=2000):
        uninterrupted.process(message, 0, offset)
        restored.process(message, 0, offset)
    assert vars(restored.totals) == vars(uninterrupted.totals)
    assert processor_rankings(restored, PANEL) == processor_rankings(uninterrupted, PANEL)
    original_items, original_bias = uninterrupted.recommender.export_items()
    restored_items, restored_bias = restored.recommender.export_items()
    np.testing.assert_array_equal(restored_items, original_items)
    np.testing.assert_array_equal(restored_bias, original_bias)


def _kill_during_checkpoint_write(worker: Worker, db: Path, rng: random.Random, patience=4.0):
    """SIGKILL the worker while a checkpoint write has frames in the WAL; return them.

    The writer truncates the WAL after each checkpoint, so frames in it mean a
    write is under way: before its commit (frames after the last commit
    frame) or between commit and truncation. The worker is frozen (SIGSTOP)
    while the WAL is read, so the kill lands in exactly the state seen. It
    waits up to ``patience`` seconds for a write caught before its commit,
    then takes any write in progress.
    """
    wal = db.with_name(db.name + "-wal")
    seen_empty = False
    started = time.monotonic()
    while time.monotonic() < started + 60:
        freeze(worker.pid)
        frames = wal_frames(wal)
        if seen_empty and (
            frames.uncommitted or (frames.frames and time.monotonic() > started + patience)
        ):
            worker.kill()
            return frames
        seen_empty = seen_empty or not frames.frames
        thaw(worker.pid)
        time.sleep(rng.uniform(0.002, 0.02))
    raise AssertionError("no checkpoint write caught within 60 s")


@pytest.mark.slow
@pytest.mark.integration
def test_sigkill_at_random_moments_counts_every_event_exactly_once(engine_env, tmp_path):
    db = tmp_path / "reco.db"
    env = engine_env_with(engine_env, RECO_PARTITIONS=2, RECO_CHECKPOINT_INTERVAL=0.3)
    rng = random.Random(20240611)
    producer = PacedProducer(
        env["RECO_BROKER"], env["RECO_TOPIC"], KnownStream(seed=11), rate=400, partitions=2
    )
    producer.start()
    worker = Worker(env, tmp_path / "worker.log")
    kills = []
    try:
        received = 0
        for life in range(5):
            worker.start()
            progress = wait_for(
                lambda r=received: (c := latest(db)) and c.totals.received > r and c,
                90,
                f"life {life} to consume",
            )
            if life % 2:
                wal = _kill_during_checkpoint_write(worker, db, rng)
                kills.append(("mid-checkpoint", wal))
            else:
                time.sleep(rng.uniform(0.1, 2.0))
                worker.kill()
                kills.append(("random", None))
            after = latest(db)
            assert after is not None and after.totals.received >= progress.totals.received
            # The restart resumes from the latest complete checkpoint: restoring
            # it reproduces what readers ranked from it.
            users = [u for u in PANEL if StoreReader(db).history(u, 1)]
            assert processor_rankings(_restored(db), users) == panel_rankings(db, users)
            received = after.totals.received
        sent = producer.stop()
        worker.start()
        wait_for(
            lambda: (c := latest(db)) and c.totals.received == sent.total,
            120,
            f"all {sent.total} events",
        )
        assert worker.terminate() == 0
        assert "final checkpoint" in worker.output()
    finally:
        worker.stop_quietly()
        if producer.is_alive():
            producer.stop()
    final = latest(db)
    assert final.totals.received == sent.total
    assert final.totals.positive == sent.positive
    assert final.totals.rejected == sent.bad
    assert final.offsets == sent.per_partition
    mid_checkpoint = [wal for kind, wal in kills if kind == "mid-checkpoint"]
    assert len(kills) >= 5 and len(mid_checkpoint) >= 2
    print(
        f"kills: {len(kills)}, of which {len(mid_checkpoint)} with a checkpoint write in the "
        f"WAL ({sum(w.uncommitted > 0 for w in mid_checkpoint)} before its commit); "
        f"{sent.total} events"
    )


_INTERRUPTED_WRITER = """
import sys, time
from engine.processing.processor import ProcessorConfig, StreamProcessor
from storage import StoreWriter

writer = StoreWriter(sys.argv[1])
checkpoint, state = writer.latest()
processor = StreamProcessor(ProcessorConfig())
processor.restore(checkpoint, state)
# Enough rejected payloads that SQLite spills the transaction into the WAL early.
for offset in range(2000, 12000):
    processor.process(b"x" * 600, 0, offset)

def stall(*args):
    print("inside the transaction", flush=True)
    time.sleep(120)

writer._prune = stall  # the last step before the commit
writer.write_checkpoint(processor.checkpoint())
"""


def test_a_store_whose_last_write_was_interrupted_still_opens(tmp_path):
    db = tmp_path / "reco.db"
    processor = StreamProcessor(ProcessorConfig())
    stream = KnownStream(seed=5)
    for offset in range(2000):
        processor.process(stream.next()[0], 0, offset)
    writer = StoreWriter(db)
    writer.write_checkpoint(processor.checkpoint())
    writer.close()
    before = panel_rankings(db, PANEL[:5])

    child = subprocess.Popen(
        [PYTHON, "-c", _INTERRUPTED_WRITER, str(db)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "inside the transaction", child.stderr.read()
        wal = wal_frames(db.with_name("reco.db-wal"))
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    assert wal.uncommitted > 0  # the kill really cut a transaction in half
    assert db.with_name("reco.db-wal").exists() and db.with_name("reco.db-shm").exists()

    # Readers (read-only) see the last complete checkpoint, not half of the next one.
    checkpoint = StoreReader(db).latest_checkpoint()
    assert (checkpoint.totals.received, checkpoint.offsets) == (2000, {0: 2000})
    assert panel_rankings(db, PANEL[:5]) == before
    # The engine's own open recovers the WAL and resumes from there.
    status = subprocess.run(
        [PYTHON, "-m", "engine", "status", "--db", str(db)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert '"received": 2000' in status.stdout
    assert _restored(db).offsets == {0: 2000}


def _store(path: Path) -> Path:
    processor = StreamProcessor(ProcessorConfig())
    stream = KnownStream(seed=9)
    for offset in range(3000):
        processor.process(stream.next()[0], 0, offset)
    writer = StoreWriter(path)
    for _ in range(3):
        writer.write_checkpoint(processor.checkpoint())
    writer.close()
    return path


def _garbage(path: Path) -> Path:
    path.write_bytes(random.Random(1).randbytes(20_000))
    return path


def _foreign(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    conn.executemany("INSERT INTO notes (text) VALUES (?)", [("keep me",)] * 100)
    conn.commit()
    conn.close()
    return path


def _truncated(path: Path) -> Path:
    _store(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _damaged(path: Path) -> Path:
    _store(path)
    data = bytearray(path.read_bytes())
    page = 4096
    for start in range(2 * page, len(data) - page, 3 * page):
        data[start + 100 : start + 400] = random.Random(start).randbytes(300)
    path.write_bytes(bytes(data))
    return path


def _newer(path: Path) -> Path:
    _store(path)
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
        "VALUES ('reco-store', '9999_from_the_future', '2099-01-01')"
    )
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (_garbage, "is not an SQLite database"),
        (_foreign, "of something else"),
        (_truncated, "reco.db"),
        (_damaged, "reco.db"),
        (_newer, "newer version"),
    ],
    ids=["garbage", "foreign-sqlite", "truncated", "damaged-pages", "newer-version"],
)
def test_a_corrupt_or_foreign_file_stops_the_worker_and_stays_untouched(
    tmp_path, engine_env, make, says
):
    folder = tmp_path / "data"
    folder.mkdir()
    db = make(folder / "reco.db")
    files_before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    env = engine_env_with(engine_env, RECO_DB=db)

    result = engine("worker", env=env, cwd=REPO, timeout=60)

    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(db) in lines[0] and says in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    files_after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    assert files_after == files_before  # byte for byte, and nothing added beside it


def test_faust_a_worker_refuses_a_corrupt_file_the_same_way(tmp_path, engine_env):
    db = _garbage(tmp_path / "reco.db")
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    result = subprocess.run(
        [PYTHON, "-m", "faust", "-A", "engine.worker.app", "worker", "--without-web"],
        env=engine_env_with(engine_env, RECO_DB=db),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    errors = [line for line in output.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and f"{db} is not an SQLite database" in errors[0]
    assert "Traceback" not in output
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
