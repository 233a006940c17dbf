"""The live API and the closed loop, against real workers on the embedded broker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from contextlib import contextmanager

import pytest

from storage import StoreError, StoreReader
from tests.support.api import get
from tests.support.workers import wait_for

pytestmark = pytest.mark.integration

EVENTS = 1500
STARTING = (OSError, StoreError, ValueError)  # no API, no store or no answer yet: wait on


@contextmanager
def running(command: list[str], env: dict):
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        process.output = output


def _produce(env: dict, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "engine", "produce", "--source", "synthetic", "--quiet", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_api_answers_known_unknown_and_bad_requests(engine_env, tmp_path):
    api = f"http://127.0.0.1:{engine_env['RECO_WEB_PORT']}"
    with running([sys.executable, "-m", "engine", "worker"], engine_env) as worker:
        _produce(engine_env, "--events", str(EVENTS))
        health = wait_for(
            lambda: (h := get(f"{api}/health")[1])["events"] == EVENTS and h,
            90,
            f"{EVENTS} events through the worker",
            ignoring=STARTING,
        )
        assert health["ok"] is True and health["model"] == "hybrid"
        # The default RECO_EVENT_LOOP, really in use (Faust alone would ignore it).
        assert health["event_loop"] == "uvloop"
        assert health["last_event_time"] > 1.6e9 and health["items"] > 0

        # u0 is the synthetic stream's most active user: certainly known by now.
        status, known = get(f"{api}/recommend/u0?n=5")
        assert status == 200
        assert set(known) == {"user", "items", "model", "fallback", "variant", "worker"}
        assert known["worker"] == api  # the only worker answers for every user itself
        assert known["user"] == "u0" and known["fallback"] is False
        assert known["variant"] in ("model", "baseline")
        assert known["model"] == ("hybrid" if known["variant"] == "model" else "popular")
        assert [item["rank"] for item in known["items"]] == [1, 2, 3, 4, 5]
        scores = [item["score"] for item in known["items"]]
        assert scores == sorted(scores, reverse=True)
        # Names come from the store (the producer wrote them) and nothing is already liked.
        assert all(item["name"].startswith("The ") for item in known["items"])
        wait_for(
            lambda: StoreReader(tmp_path / "reco.db").history("u0"),
            30,
            "a checkpoint",
            ignoring=STARTING,
        )
        liked = {h.item for h in StoreReader(tmp_path / "reco.db").history("u0", limit=500)}
        assert not liked & {item["item"] for item in known["items"]}

        status, unknown = get(f"{api}/recommend/somebody-new")
        assert status == 200 and unknown["fallback"] is True and unknown["model"] == "popular"
        assert len(unknown["items"]) == 10

        for path, code in [
            ("/recommend/u0?n=0", 400),
            ("/recommend/u0?n=101", 400),
            ("/recommend/u0?n=ten", 400),
            ("/recommend/" + "x" * 300, 400),
            ("/recommend/tab%09inside", 400),
            ("/recommend/%20", 400),
            ("/recommend/", 404),
            ("/no/such/path", 404),
        ]:
            status, body = get(api + path)
            assert (status, set(body)) == (code, {"error"}), path
        assert get(f"{api}/recommend/u0", method="POST")[0] == 405

        # The answers above were impressions; the next checkpoint stores them per variant.
        def impressions():
            points = StoreReader(tmp_path / "reco.db").online_metrics()
            return sum(p.impressions for p in points)

        wait_for(lambda: impressions() >= 2, 30, "impressions in the store", ignoring=STARTING)
    assert worker.returncode == 0, worker.output[-3000:]


def test_faust_own_command_serves_the_api_too(engine_env):
    api = f"http://127.0.0.1:{engine_env['RECO_WEB_PORT']}"
    command = [sys.executable, "-m", "faust", "-A", "engine.worker.app", "worker", "-l", "warn"]
    with running(command, engine_env):
        # Ready (200, ok) once its partitions are assigned: then it consumes.
        wait_for(
            lambda: get(f"{api}/health")[1]["ok"],
            90,
            "faust worker ready",
            ignoring=STARTING,
        )
        assert get(f"{api}/health")[0] == 200


def test_a_second_worker_on_a_taken_port_says_so_in_one_line(engine_env, tmp_path):
    with running([sys.executable, "-m", "engine", "worker"], engine_env):
        api = f"http://127.0.0.1:{engine_env['RECO_WEB_PORT']}"
        wait_for(
            lambda: get(f"{api}/health")[1],
            90,
            "the first worker's API",
            ignoring=STARTING,
        )
        second = subprocess.run(
            [sys.executable, "-m", "engine", "worker"],
            env={**engine_env, "RECO_DB": str(tmp_path / "second.db")},  # a store of its own
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert second.returncode == 2
    assert f"port {engine_env['RECO_WEB_PORT']} on 127.0.0.1 is in use" in second.stderr


def test_the_closed_loop_demo_makes_impressions_and_clicks(engine_env, tmp_path):
    api = f"http://127.0.0.1:{engine_env['RECO_WEB_PORT']}"
    env = {**engine_env, "RECO_API_URL": api}
    with running([sys.executable, "-m", "engine", "worker"], env):
        wait_for(lambda: get(f"{api}/health")[1], 90, "the worker's API", ignoring=STARTING)
        _produce(env, "--closed-loop", "--events", "4000", "--rate", "500")

        def online():
            points = StoreReader(tmp_path / "reco.db").online_metrics()
            shown = {
                v: sum(p.impressions for p in points if p.variant == v)
                for v in ("model", "baseline")
            }
            clicked = sum(p.clicks for p in points)
            return (
                shown["model"] > 50 and shown["baseline"] > 5 and clicked > 10 and (shown, clicked)
            )

        shown, clicked = wait_for(
            online, 60, "impressions and clicks of both variants", ignoring=STARTING
        )
    assert clicked <= sum(shown.values())
    status = subprocess.run(
        [sys.executable, "-m", "engine", "status"], env=env, capture_output=True, text=True
    )
    report = json.loads(status.stdout)["online"]
    assert report["model"]["impressions"] >= shown["model"]
    assert 0.0 <= report["baseline"]["ctr"] <= 1.0
