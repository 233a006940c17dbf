"""One writer per store: a second worker refuses in one line; a killed one blocks nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from engine.sources.broker import free_port
from storage import StoreLocked, WriterLock
from tests.support.paths import PYTHON, REPO
from tests.support.stores import latest
from tests.support.workers import Worker, wait_for


def test_a_second_writer_is_told_who_holds_the_store(tmp_path):
    db = tmp_path / "reco.db"
    with WriterLock(db):
        with pytest.raises(StoreLocked) as refused:
            WriterLock(db).acquire()
        assert str(db) in str(refused.value) and f"pid {os.getpid()} (" in str(refused.value)
    with WriterLock(db):  # released: anyone may take it now
        pass


def test_a_lock_left_by_a_killed_process_does_not_block_the_next(tmp_path):
    db = tmp_path / "reco.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from storage import WriterLock; WriterLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); time.sleep(60)",
            str(db),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreLocked):
            WriterLock(db).acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        with WriterLock(db):
            pass
    finally:
        holder.kill()
        holder.wait(10)


@pytest.mark.integration
@pytest.mark.parametrize(
    "command",
    [
        ["-m", "engine", "worker"],
        ["-m", "faust", "-A", "engine.worker.app", "worker", "--without-web"],
    ],
    ids=["python -m engine worker", "faust -A engine.worker.app worker"],
)
def test_a_second_worker_on_a_store_in_use_refuses_in_one_line(engine_env, tmp_path, command):
    db = tmp_path / "reco.db"
    first = Worker(engine_env, tmp_path / "first.log").start()
    try:
        wait_for(lambda: latest(db), 60, "the first worker's checkpoint")
        second_env = {**engine_env, "RECO_WEB_PORT": str(free_port())}
        started = time.monotonic()
        second = subprocess.run(
            [PYTHON, *command], env=second_env, capture_output=True, text=True, timeout=90
        )
        assert second.returncode == 2
        said = [line for line in second.stderr.splitlines() if "is being written by" in line]
        assert len(said) == 1 and str(db) in said[0] and f"pid {first.pid} (" in said[0]
        assert "Traceback" not in second.stderr
        assert time.monotonic() - started < 60
        assert first.alive()
    finally:
        assert first.terminate() == 0
