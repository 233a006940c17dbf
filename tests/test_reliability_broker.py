"""Broker faults: a 30 s outage mid-stream, and an engine started before its broker.

Each test runs its own embedded broker, so stopping it touches no other test.
The embedded broker keeps everything in memory: after a restart its topics
are empty and their offsets start at 0 again.
"""

from __future__ import annotations

import time

import pytest

from engine.sources.broker import EmbeddedBroker
from tests.support.api import health
from tests.support.messages import KnownStream
from tests.support.paths import PYTHON
from tests.support.stores import latest
from tests.support.topics import send
from tests.support.workers import Worker, engine_env_with, wait_for

pytestmark = pytest.mark.integration

OUTAGE_S = 30


def _messages(stream: KnownStream, n: int) -> tuple[list[bytes], int]:
    """``n`` messages and how many of them are positive."""
    batch = [stream.next() for _ in range(n)]
    return [message for message, _ in batch], sum(kind == "positive" for _, kind in batch)


@pytest.mark.slow
def test_a_broker_outage_is_reported_survived_and_counted_once(engine_env, tmp_path):
    db = tmp_path / "reco.db"
    stream = KnownStream(seed=21)
    before, positive_before = _messages(stream, 2000)
    after, positive_after = _messages(stream, 1200)
    broker = EmbeddedBroker().start()
    env = engine_env_with(engine_env, RECO_BROKER=broker.url)
    worker = Worker(env, tmp_path / "worker.log").start()
    try:
        send(broker.url, env["RECO_TOPIC"], before)
        ahead = wait_for(
            lambda: (c := latest(db)) and c.totals.received == len(before) and c,
            90,
            "the events sent before the outage",
        )
        assert ahead.broker_connected is True and ahead.stalled_since is None
        api = f"http://127.0.0.1:{env['RECO_WEB_PORT']}"
        assert health(api) == (200, [])

        broker.stop()
        down_at = time.time()
        # The readiness probe says so within 10 s; the liveness probe stays up.
        status, reasons = wait_for(lambda: (h := health(api))[0] == 503 and h, 10, "a 503")
        assert reasons[0].startswith("broker unreachable since "), reasons
        assert health(api, "/health/live")[0] == 200
        stalled = wait_for(
            lambda: (c := latest(db)) and c.broker_connected is False and c,
            OUTAGE_S - 5,
            "a checkpoint that reports the outage",
        )
        assert down_at - 2 <= stalled.stalled_since <= time.time()
        while time.time() < down_at + OUTAGE_S:
            assert worker.alive(), worker.output()[-3000:]
            time.sleep(1)
        during = latest(db)
        assert during.id > stalled.id  # checkpoints went on through the outage
        assert during.broker_connected is False and during.stalled_since == stalled.stalled_since
        assert during.totals.received == len(before)

        broker = EmbeddedBroker(broker.port).start()
        # The restarted broker has forgotten the topic; the producer creates it anew.
        send(broker.url, env["RECO_TOPIC"], after)
        final = wait_for(
            lambda: (c := latest(db)) and c.totals.received >= len(before) + len(after) and c,
            120,
            "the events sent after the outage",
        )
        time.sleep(3)  # anything counted twice would show up by now
        final = latest(db)
        wait_for(lambda: health(api) == (200, []), 30, "/health ready again")
        # SIGTERM while the broker is away: still a final checkpoint and exit 0.
        broker.stop()
        wait_for(lambda: latest(db).broker_connected is False, 30, "the second outage")
        stopping = time.monotonic()
        assert worker.terminate() == 0
        stop_s = time.monotonic() - stopping
    finally:
        worker.stop_quietly()
        broker.stop()
    output = worker.output()
    assert final.totals.received == len(before) + len(after)
    assert final.totals.positive == positive_before + positive_after
    assert final.users >= ahead.users  # the model was kept, not started again
    assert final.broker_connected is True and final.stalled_since is None
    assert "is unreachable" in output and "reachable again" in output
    assert "the topic was re-created" in output
    assert "Traceback" not in output
    assert "final checkpoint" in output and latest(db).totals.received == final.totals.received
    print(f"SIGTERM during an outage: exit 0 after {stop_s:.1f} s")


@pytest.mark.parametrize(
    "command",
    [
        [PYTHON, "-m", "engine", "worker"],
        [PYTHON, "-m", "faust", "-A", "engine.worker.app", "worker", "--without-web"],
    ],
    ids=["python-m-engine", "faust-A"],
)
def test_a_worker_started_before_its_broker_waits_and_then_runs(engine_env, tmp_path, command):
    db = tmp_path / "reco.db"
    broker = EmbeddedBroker()  # a free port, nothing listening on it yet
    env = engine_env_with(engine_env, RECO_BROKER=broker.url)
    worker = Worker(env, tmp_path / "worker.log", command).start()
    try:
        wait_for(
            lambda: "is not reachable yet" in worker.output(), 60, "the waiting line", every=0.5
        )
        assert worker.alive(), worker.output()[-3000:]
        broker.start()
        messages, _ = _messages(KnownStream(seed=4), 500)
        send(broker.url, env["RECO_TOPIC"], messages)
        wait_for(
            lambda: (c := latest(db)) and c.totals.received == len(messages),
            90,
            "the events",
        )
        assert worker.terminate() == 0
    finally:
        worker.stop_quietly()
        broker.stop()
    output = worker.output()
    assert "Traceback" not in output
    assert output.count("is not reachable yet") == 1


# -- the decisions behind the above, one at a time (no broker needed) -----------------------


def test_resume_positions_rebase_onto_a_recreated_or_truncated_topic(tmp_path, caplog):
    from engine.settings import load_settings
    from engine.worker.runtime import EngineRuntime

    runtime = EngineRuntime(load_settings({"RECO_DB": str(tmp_path / "reco.db")}))
    try:
        runtime.processor.offsets = {0: 2000, 1: 500, 2: 700}
        assert runtime.resume_position(0, earliest=0, end=2500) == 2000  # the normal case
        assert runtime.resume_position(1, earliest=0, end=40) == 0  # topic re-created
        assert runtime.resume_position(2, earliest=900, end=1000) == 900  # retention
        assert runtime.resume_position(3, earliest=0, end=10) == 0  # never consumed
        assert runtime.processor.offsets == {0: 2000, 1: 0, 2: 900}
        assert "the topic was re-created" in caplog.text
        assert "offsets 700 to 899 are gone" in caplog.text

        # Redelivered offsets are skipped, not counted twice.
        runtime.process(b'{"user": "u", "item": "i", "rating": 5, "timestamp": 1}', 0, 1999)
        assert runtime.redelivered == 1 and runtime.processor.totals.received == 0
        runtime.process(b'{"user": "u", "item": "i", "rating": 5, "timestamp": 1}', 0, 2000)
        assert runtime.processor.totals.received == 1 and runtime.processor.offsets[0] == 2001
    finally:
        runtime.checkpointer.close()


def test_the_broker_watch_reports_an_outage_once_with_its_start(caplog):
    from engine.worker.broker_watch import BrokerWatch

    caplog.set_level("INFO", logger="engine.worker.broker_watch")
    watch = BrokerWatch("kafka://127.0.0.1:1")
    watch.record(True, now=100.0)
    assert (watch.connected, watch.stalled_since) == (True, None)
    for now in (110.0, 111.0, 112.0):
        watch.record(False, now=now)
    assert (watch.connected, watch.stalled_since) == (False, 110.0)
    watch.record(True, now=140.0)
    assert (watch.connected, watch.stalled_since) == (True, None)
    assert caplog.text.count("is unreachable") == 1
    assert "reachable again after 30 s" in caplog.text


def test_repeated_library_errors_are_held_back_and_counted():
    import logging

    from engine.worker.throttle import Throttle

    clock = [0.0]
    throttle = Throttle(every_s=30, clock=lambda: clock[0])

    def record(msg, level=logging.ERROR):
        return logging.LogRecord("aiokafka.conn", level, __file__, 1, msg, ("x",), None)

    assert throttle.filter(record("Unable connect to node %s"))
    assert not any(throttle.filter(record("Unable connect to node %s")) for _ in range(50))
    assert throttle.filter(record("Another failure %s"))  # a different message passes
    assert throttle.filter(record("debug detail %s", logging.DEBUG))
    clock[0] = 31.0
    again = record("Unable connect to node %s")
    assert throttle.filter(again)
    assert again.getMessage() == "Unable connect to node x [50 more like this in the last 31 s]"
