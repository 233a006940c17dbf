"""End to end on the real embedded broker: producer -> topic -> engine -> store."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from engine.settings import Settings
from storage import StoreReader
from tests.support.commands import engine
from tests.support.paths import REPO
from tests.support.stores import latest
from tests.support.workers import wait_for

pytestmark = pytest.mark.integration

SENT = 3000


def test_every_sent_event_is_accounted_for_and_sigterm_checkpoints(engine_env, tmp_path):
    db = tmp_path / "reco.db"
    worker = subprocess.Popen(
        [sys.executable, "-m", "engine", "worker"],
        env=engine_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        produced = engine(
            "produce", "--source", "synthetic", "--events", str(SENT), "--malformed", "0.03", "--quiet",
            env=engine_env, cwd=REPO,
        )  # fmt: skip
        assert produced.returncode == 0, produced.stderr
        totals = wait_for(
            lambda: (c := latest(db)) and c.totals.received == SENT and c.totals,
            60,
            f"{SENT} events in the store",
        )
        assert totals.accepted + totals.rejected == SENT
        assert 30 < totals.rejected < 200
        assert totals.positive > 0 and totals.evaluated == totals.positive
        assert StoreReader(db).rejected_events(limit=1000)[0].reason

        status = engine("status", env=engine_env, cwd=REPO)
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["received"] == SENT
        # The topic's partitions (RECO_PARTITIONS, 4) hold every message between them.
        assert sorted(report["offsets"]) == [str(p) for p in range(Settings().partitions)]
        assert sum(report["offsets"].values()) == SENT
        assert {
            "time",
            "model",
            "accepted",
            "positive",
            "rejected",
            "users",
            "items",
            "recall_at_10",
            "popular_recall_at_10",
        } <= report.keys()
        before = StoreReader(db).latest_checkpoint().id
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output[-3000:]
    assert "final checkpoint" in output
    assert StoreReader(db).latest_checkpoint().id > before


def test_restarted_engine_resumes_after_its_checkpoint(engine_env, tmp_path):
    db = tmp_path / "reco.db"
    first = engine(
        "produce", "--source", "synthetic", "--events", 1000, "--quiet", env=engine_env, cwd=REPO
    )
    assert first.returncode == 0
    for expected in (1000, 1500):
        worker = subprocess.Popen(
            [sys.executable, "-m", "engine", "worker"],
            env=engine_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(
                lambda e=expected: (c := latest(db)) and c.totals.received == e,
                60,
                f"{expected} events",
            )
        finally:
            worker.kill()  # no final checkpoint: the restart must rely on the last periodic one
            worker.wait()
        if expected == 1000:
            more = engine(
                "produce", "--source", "synthetic", "--events", 500, "--seed", 3, "--quiet",
                env=engine_env, cwd=REPO,
            )  # fmt: skip
            assert more.returncode == 0
    totals = StoreReader(db).latest_checkpoint().totals
    assert totals.received == 1500  # nothing re-counted after the kill


def test_status_without_checkpoint_says_so_in_one_line(tmp_path, engine_env):
    result = engine("status", "--db", str(tmp_path / "none.db"), env=engine_env, cwd=REPO)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "start the engine" in result.stderr


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (["--model", "magic"], "RECO_MODEL=magic is not valid"),
        (["--checkpoint-interval", "-1"], "RECO_CHECKPOINT_INTERVAL=-1.0 is not valid"),
        (["--eval-fraction", "lots"], "RECO_EVAL_FRACTION='lots' is not valid"),
        (["--db", "/proc/no/such/place/reco.db"], "cannot create the folder"),
    ],
)
def test_bad_settings_stop_the_worker_with_one_line(engine_env, flag, message):
    result = engine("worker", *flag, env=engine_env, cwd=REPO, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
