"""Smoke tests of the benchmarks: they complete and print well-formed JSON. No speed is asserted."""

from __future__ import annotations

import json
import os

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


def test_scale_bench_stops_its_workers_when_it_fails(tmp_path):
    from engine.bench.scale import worker_processes
    from engine.sources.broker import free_port

    env = {**os.environ, "RECO_BROKER": f"kafka://127.0.0.1:{free_port()}"}  # nobody listens
    folders = [tmp_path / "worker-0", tmp_path / "worker-1"]
    with (
        pytest.raises(RuntimeError, match="the bench failed"),
        worker_processes(folders, env) as workers,
    ):
        assert len(workers) == 2 and all(w.process.poll() is None for w in workers)
        raise RuntimeError("the bench failed")
    assert all(w.process.returncode is not None for w in workers)


def test_scale_bench_replays_the_file_each_copy_later_with_the_same_users(tmp_path):
    from engine.bench.scale import messages_for

    data = tmp_path / "u.data"
    data.write_text("1\t10\t5\t100\n2\t11\t3\t105\n1\t12\t4\t110\n")
    events = [json.loads(m) for m in messages_for(str(data), None, 3, "json")]
    assert [e["user"] for e in events] == ["1", "2", "1"] * 3
    times = [e["timestamp"] for e in events]
    assert times == sorted(times) and len(set(times)) == 9
