"""docs/operations.md's Prometheus configuration and alert rules are valid and fire as meant."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.paths import REPO

PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found (apt-get install prometheus; .ci/run does)"
)


@needs_promtool
def test_the_scrape_configuration_and_its_rules_are_valid():
    done = subprocess.run(
        [PROMTOOL, "check", "config", "docs/prometheus/prometheus.yml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 rules found" in done.stdout + done.stderr


@needs_promtool
def test_each_alert_fires_on_its_series_and_not_on_a_healthy_worker():
    done = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts_test.yml"],
        cwd=REPO / "tests" / "prometheus",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
