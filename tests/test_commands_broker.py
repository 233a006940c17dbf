"""`broker` and `wait-for-broker`, run as a user runs them."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from engine.sources.broker import free_port, is_listening
from tests.support.commands import HOST, command_env, engine, one_line
from tests.support.paths import PYTHON
from tests.support.readme import covers
from tests.support.workers import wait_for

# The slow commands (tests/support/command_jobs.py) start with the first test of the
# test_commands_* modules, whichever runs first.
pytestmark = pytest.mark.usefixtures("command_jobs")


@pytest.mark.integration
@covers("broker", "--port")
def test_broker_serves_on_its_port_until_sigterm(tmp_path):
    port, cwd, log = free_port(), tmp_path / "cwd", tmp_path / "broker.log"
    cwd.mkdir()
    with open(log, "w") as output:
        process = subprocess.Popen(
            [PYTHON, "-m", "engine", "broker", "--port", str(port)],
            env=command_env(),
            cwd=cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        said = f"listening on kafka://{HOST}:{port}"
        wait_for(lambda: said in log.read_text() or process.poll() is not None, 30, said)
        assert process.poll() is None and _listening(port), log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert process.returncode == 0, log.read_text()
    wait_for(lambda: not _listening(port), 30, "the broker to release its port")
    assert list(cwd.iterdir()) == []  # memory only


@pytest.mark.integration
@covers("broker")
def test_broker_takes_its_port_and_log_level_from_the_environment(tmp_path):
    port = free_port()
    env = command_env(RECO_BROKER_PORT=port, RECO_LOG_LEVEL="warning")
    process = subprocess.Popen(
        [PYTHON, "-m", "engine", "broker"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: _listening(port) or process.poll() is not None, 30, "the broker")
        assert process.poll() is None, process.communicate()
        time.sleep(1)  # long enough for the 'listening on' line it would log at info
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "INFO" not in err  # RECO_LOG_LEVEL=warning


def _listening(port: int) -> bool:
    return is_listening(HOST, port)


@pytest.mark.integration
@covers("wait-for-broker", "--timeout", "--broker")
def test_wait_for_broker_returns_once_any_listed_broker_answers(broker, tmp_path):
    up = engine(
        "wait-for-broker", "--broker", broker.url, "--timeout", 5, env=command_env(), cwd=tmp_path
    )
    assert up.returncode == 0 and up.stdout == "" and up.stderr == ""
    # Several bootstrap brokers, the first one down: any one that answers will do.
    down = free_port()
    listed = command_env(RECO_BROKER=f"kafka://{HOST}:{down};{HOST}:{broker.port}")
    either = engine("wait-for-broker", "--timeout", 30, env=listed, cwd=tmp_path)
    assert either.returncode == 0, either.stderr  # within its timeout, so not on the first host


@covers("wait-for-broker", "--timeout")
def test_wait_for_broker_gives_up_after_its_timeout_with_one_line(tmp_path):
    url = f"kafka://{HOST}:{free_port()}"
    started = time.monotonic()
    result = engine(
        "wait-for-broker", "--timeout", 1, env=command_env(RECO_BROKER=url), cwd=tmp_path
    )
    assert result.returncode == 1
    assert url in one_line(result.stderr)
    assert 1 <= time.monotonic() - started < 30
    assert list(tmp_path.iterdir()) == []
