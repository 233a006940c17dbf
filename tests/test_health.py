"""/health tells the truth about checkpoints; /health/live only that the process answers.

The broker's side (503 within 10 s of an outage, 200 after it) is checked in
test_reliability_broker.py, which already runs a broker of its own to stop.
"""

from __future__ import annotations

import sqlite3

import pytest

from tests.support.api import health
from tests.support.messages import message
from tests.support.stores import latest
from tests.support.topics import send
from tests.support.workers import Worker, wait_for

pytestmark = pytest.mark.integration


def test_a_failing_checkpoint_turns_health_to_503_until_one_succeeds(engine_env, tmp_path):
    db = tmp_path / "reco.db"
    api = f"http://127.0.0.1:{engine_env['RECO_WEB_PORT']}"
    worker = Worker(engine_env, tmp_path / "worker.log").start()
    try:
        assert wait_for(lambda: (h := health(api))[0] == 503 and h, 60, "the API")[1]
        send(engine_env["RECO_BROKER"], engine_env["RECO_TOPIC"], [message("u1", "i1", 5)])
        wait_for(lambda: (c := latest(db)) and c.totals.received == 1, 60, "the event")
        wait_for(lambda: health(api) == (200, []), 30, "a ready worker")

        # Another program holds the store's write lock: checkpoints fail.
        locker = sqlite3.connect(db, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        try:
            status, reasons = wait_for(lambda: (h := health(api))[0] == 503 and h, 20, "a 503")
            assert len(reasons) == 1 and reasons[0].startswith("checkpoint failing since ")
            assert health(api, "/health/live")[0] == 200
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        wait_for(lambda: health(api) == (200, []), 30, "ready again")
        assert worker.terminate() == 0
    finally:
        worker.stop_quietly()
