"""GET /metrics, read with prometheus-client's own parser, agrees with `status`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.settings import Settings
from tests.support.api import health
from tests.support.paths import REPO
from tests.support.stores import latest
from tests.support.workers import Worker, wait_for

pytestmark = pytest.mark.integration


EVENTS = 3000


def scrape(api: str) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"{api}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def by_label(samples: dict, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: v for (n, labels), v in samples.items() if n == name}


def test_metrics_during_a_replay_and_status_after_it_agree(engine_env, tmp_path):
    db = tmp_path / "reco.db"
    api = f"http://127.0.0.1:{engine_env['RECO_WEB_PORT']}"
    worker = Worker(engine_env, tmp_path / "worker.log").start()
    try:
        # Ready (partitions assigned) before the replay starts, and the replay
        # paced to last 6 s: a scrape in its middle cannot miss it, however
        # loaded the machine.
        wait_for(lambda: health(api) == (200, []), 90, "a ready worker")
        produce = [sys.executable, "-m", "engine", "produce", "--source", "synthetic"]
        producer = subprocess.Popen(
            [*produce, "--events", str(EVENTS), "--rate", "500", "--malformed", "0.05", "--quiet"],
            env=engine_env,
            stderr=subprocess.DEVNULL,
        )
        during = wait_for(
            lambda: (
                (s := _scrape_or_none(api))
                and 0 < s.get(("reco_messages_received_total", ()), 0) < EVENTS
                and s
            ),
            60,
            "a scrape in the middle of the replay",
        )
        assert during[("reco_broker_reachable", ())] == 1
        assert producer.wait(60) == 0
        wait_for(lambda: (c := latest(db)) and c.totals.received == EVENTS, 60, "every event")
        with urllib.request.urlopen(f"{api}/recommend/u1", timeout=10):
            pass  # one request for the API's histogram
        samples = scrape(api)
        status = json.loads(
            subprocess.run(
                [sys.executable, "-m", "engine", "status"],
                env=engine_env,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout
        )
    finally:
        worker.terminate()

    assert samples[("reco_messages_received_total", ())] == status["received"] == EVENTS
    assert samples[("reco_messages_positive_total", ())] == status["positive"]
    assert samples[("reco_messages_accepted_total", ())] == status["accepted"]
    rejected = by_label(samples, "reco_messages_rejected_total", "reason")
    assert rejected == {reason: float(n) for reason, n in status["rejected_by_reason"].items()}
    assert sum(rejected.values()) == status["rejected"] > 0
    assert samples[("reco_users", ())] == status["users"]
    recall = samples[("reco_recall_at_10", (("variant", "model"), ("window", "cumulative")))]
    assert recall == pytest.approx(status["recall_at_10"])
    assert samples[("reco_checkpoint_duration_seconds_count", ())] > 0
    assert samples[("reco_api_request_duration_seconds_count", ())] > 0
    assert samples[("reco_checkpoints_total", ())] > 0
    # One worker owns every partition of the topic it created.
    every = [str(partition) for partition in range(Settings().partitions)]
    assert by_label(samples, "reco_partition_owned", "partition") == dict.fromkeys(every, 1.0)
    # The alert rules of docs/operations.md use only metrics a worker exports.
    rules = (REPO / "docs" / "prometheus" / "alerts.yml").read_text()
    exported = {name for name, _ in samples}
    assert set(re.findall(r"reco_[a-z0-9_]+", rules)) <= exported
    assert by_label(samples, "reco_consumer_lag_messages", "partition") == dict.fromkeys(every, 0.0)


def _scrape_or_none(api: str) -> dict | None:
    try:
        return scrape(api)
    except OSError:
        return None
