"""Smoke tests of the benchmarks: they complete and print well-formed JSON. No speed is asserted."""

from __future__ import annotations

import json

import pytest

from engine import cli

MODEL_KEYS = {
    "users",
    "items",
    "update_us",
    "evaluate_us",
    "register_us",
    "rss_mb",
    "checkpoint_full_ms",
    "checkpoint_incremental_ms",
    "checkpoint_full_capture_ms",
    "checkpoint_full_again_ms",
    "checkpoint_incremental_capture_ms",
    "checkpoint_mb",
    "lookup_p50_ms",
    "lookup_p99_ms",
}


@pytest.mark.parametrize("model", ["hybrid", "mf"])
def test_model_bench_prints_a_json_line_per_milestone(capsys, model):
    argv = ["bench", "model", "--users", "1200", "--items", "300", "--model", model]
    assert cli.main([*argv, "--eval-fraction", "0.5", "--checkpoint-every", "1000"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 1  # 1,200 users: below the first milestone, so only the last
    result = lines[0]
    assert result.keys() >= MODEL_KEYS
    assert result["users"] == 1200 and result["model"] == model
    assert result["incremental_users"] >= 1200  # every user changed once more
    assert all(result[key] is not None for key in MODEL_KEYS)
    assert result["checkpoint_full_capture_ms"] <= result["checkpoint_full_ms"]
    assert result["checkpoint_incremental_capture_ms"] <= result["checkpoint_incremental_ms"]


def test_model_bench_refuses_bad_sizes(capsys):
    assert cli.main(["bench", "model", "--users", "0"]) == 2
    assert "--users" in capsys.readouterr().err


@pytest.mark.integration
def test_pipeline_bench_prints_its_figures(capsys):
    assert cli.main(["bench", "pipeline", "--events", "300"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("noop_events_per_s", "engine_events_per_s", "ratio", "engine_peak_rss_mb"):
        assert result[key] > 0
    assert result["events"] == 300 and result["checkpoints"] >= 1 and result["cores"] >= 1
