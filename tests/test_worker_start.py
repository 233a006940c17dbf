"""A worker starts from any folder, on an empty topic, and again after it: as users start it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.sources.broker import free_port
from tests.support.messages import message
from tests.support.paths import PYTHON, REPO
from tests.support.stores import latest
from tests.support.topics import send
from tests.support.workers import Worker, env_without_reco, wait_for


def _fresh_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """A new user's environment: no RECO_ setting but those given, the project importable."""
    name = tmp_path.name.replace("_", "-")[-40:]
    return {
        **env_without_reco(),
        "PYTHONPATH": str(REPO),
        "RECO_TOPIC": f"events-{name}",
        "RECO_GROUP": f"group-{name}",
        "RECO_CHECKPOINT_INTERVAL": "1",
        "RECO_WEB_PORT": str(free_port()),
        **settings,
    }


@pytest.mark.integration
def test_an_idle_worker_with_its_store_elsewhere_stops_and_starts_again(broker, tmp_path):
    """No data/ folder in the working directory, no event before the first stop."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    db = tmp_path / "some" / "other" / "dir" / "reco.db"
    env = _fresh_env(tmp_path, RECO_BROKER=broker.url)
    command = [PYTHON, "-m", "engine", "worker", "--db", str(db)]
    worker = Worker(env, tmp_path / "worker.log", command, cwd=checkout).start()
    try:
        first = wait_for(lambda: latest(db), 60, "a checkpoint of the empty model")
        assert worker.terminate() == 0, worker.output()
        assert not (checkout / "data").exists()
        assert (db.parent / "faust").is_dir()

        worker.start()
        wait_for(lambda: (c := latest(db)) and c.id > first.id, 60, "a checkpoint after restart")
        send(broker.url, env["RECO_TOPIC"], [message("u1", "i1", 5), message("u2", "i1", 5)])
        done = wait_for(lambda: (c := latest(db)) and c.totals.received == 2 and c, 60, "events")
        assert (done.users, done.items) == (2, 1)
        assert worker.terminate() == 0, worker.output()
        assert "Traceback" not in worker.output()
    finally:
        worker.stop_quietly()


@pytest.mark.parametrize(
    "command",
    [["-m", "engine", "worker"], ["-m", "faust", "-A", "engine.worker.app", "worker"]],
    ids=["python -m engine worker", "faust -A engine.worker.app worker"],
)
def test_a_faust_folder_that_cannot_be_made_stops_the_worker_in_one_line(command, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = _fresh_env(
        tmp_path,
        RECO_BROKER=f"kafka://127.0.0.1:{free_port()}",
        RECO_DB=str(tmp_path / "reco.db"),
        RECO_DATADIR=str(blocker / "faust"),
    )
    done = subprocess.run(
        [PYTHON, *command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if "RECO_DATADIR" in line]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.integration
@pytest.mark.parametrize(
    ("flag", "environment"),
    [(["--log-level", "warning"], {}), ([], {"RECO_LOG_LEVEL": "warning"})],
    ids=["--log-level", "RECO_LOG_LEVEL"],
)
def test_commands_other_than_the_worker_log_at_the_level_asked(broker, tmp_path, flag, environment):
    ratings = tmp_path / "u.data"
    ratings.write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    env = _fresh_env(tmp_path, RECO_BROKER=broker.url, RECO_DB=str(tmp_path / "reco.db"))
    produce = [PYTHON, "-m", "engine", "produce", "--source", str(ratings), "--quiet"]

    def run(*extra: str, **more: str) -> str:
        done = subprocess.run(
            [*produce, *extra],
            env={**env, **more},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert " INFO engine: sent 2 events" in run()
    assert " INFO " not in run(*flag, **environment)


@pytest.mark.integration
def test_json_log_lines_for_log_collectors(broker, tmp_path):
    ratings = tmp_path / "u.data"
    ratings.write_text("196\t242\t3\t881250949\n")
    env = _fresh_env(
        tmp_path, RECO_BROKER=broker.url, RECO_DB=str(tmp_path / "reco.db"), RECO_LOG_FORMAT="json"
    )
    done = subprocess.run(
        [PYTHON, "-m", "engine", "produce", "--source", str(ratings), "--quiet"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    sent = [line for line in lines if line["message"].startswith("sent 1 events")]
    assert sent and sent[0]["level"] == "INFO" and sent[0]["logger"] == "engine"
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
