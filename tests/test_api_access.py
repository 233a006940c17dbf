"""The live API on a non-loopback address needs its bearer token; health stays open."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.api import get, health
from tests.support.workers import Worker, wait_for

TOKEN = "a-long-enough-secret-for-tests"


@pytest.mark.parametrize(
    ("token", "says"),
    [("", "RECO_API_TOKEN"), ("short", "too short")],
    ids=["no token", "a short token"],
)
def test_a_worker_serving_other_machines_without_a_secret_refuses_to_start(engine_env, token, says):
    env = {**engine_env, "RECO_WEB_HOST": "0.0.0.0", "RECO_API_TOKEN": token}
    done = subprocess.run(
        [sys.executable, "-m", "engine", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and says in done.stderr, done.stderr


@pytest.mark.integration
def test_without_the_token_a_request_gets_401_and_counts_nothing(engine_env, tmp_path):
    env = {**engine_env, "RECO_WEB_HOST": "0.0.0.0", "RECO_API_TOKEN": TOKEN}
    api = f"http://127.0.0.1:{env['RECO_WEB_PORT']}"
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        wait_for(lambda: health(api)[0] in (200, 503), 60, "the API")
        for token in (None, "", "wrong-token-of-the-same-size!!", TOKEN[:-1]):
            status, body = get(f"{api}/recommend/u1", token)
            assert status == 401, body
            assert "Bearer" in body["error"]
        assert get(f"{api}/health")[1]["impressions"] == 0
        status, body = get(f"{api}/recommend/u1", TOKEN)
        assert status == 200 and body["user"] == "u1"
        assert get(f"{api}/health")[1]["impressions"] == 1

        # The closed-loop producer's users send the token too.
        produce = [sys.executable, "-m", "engine", "produce", "--closed-loop", "--quiet"]
        done = subprocess.run(
            [*produce, "--events", "600", "--api", api],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "0 failed" in done.stderr, done.stderr
        assert get(f"{api}/health")[1]["impressions"] > 1
    finally:
        worker.terminate()
