"""The offline evaluator: FluRS's protocol on MovieLens 100k, and the same figures as the live engine."""

from __future__ import annotations

import json

import pytest

from engine import cli
from engine.evaluation.replay import Protocol, evaluate_file, positives, replay
from engine.models.registry import DEFAULT_MODEL
from engine.processing.processor import ProcessorConfig, StreamProcessor
from engine.sources.events import parse_event
from tests.support.messages import synthetic_messages

# Measured 0.1725 on this protocol, the same on any CPU (docs/evaluation.md,
# "MovieLens 100k"); a guard, not the goal.
DEFAULT_RECALL_FLOOR = 0.168


def test_popular_matches_the_published_flurs_baseline(ml100k):
    result = evaluate_file(ml100k, "popular", progress=False)
    assert result["positives"] == 21_201
    assert result["events"] == 14_841
    assert result["recall@10"] == pytest.approx(0.105, abs=0.003)
    assert result["popular_recall@10"] == pytest.approx(0.105, abs=0.003)


def test_default_model_beats_popularity_on_movielens(ml100k):
    result = evaluate_file(ml100k, DEFAULT_MODEL, progress=False)
    assert result["recall@10"] >= DEFAULT_RECALL_FLOOR
    popular = evaluate_file(ml100k, "popular", progress=False)
    assert result["mpr"] < popular["mpr"]


def test_evaluator_and_live_engine_report_the_same_recall():
    messages = synthetic_messages(3000)
    live = StreamProcessor(ProcessorConfig(model=DEFAULT_MODEL, min_rating=4.0))
    for offset, raw in enumerate(messages):
        live.process(raw, 0, offset)
    events = positives([parse_event(raw) for raw in messages], 4.0)
    offline = replay(events, DEFAULT_MODEL, Protocol(min_rating=4.0, pretrain=0.0, holdout=0.0))
    assert offline["events"] == live.totals.evaluated > 1000
    assert offline["recall@10"] == live.totals.model_hits / live.totals.evaluated
    assert offline["popular_recall@10"] == live.totals.popular_hits / live.totals.evaluated
    assert offline["mpr"] == pytest.approx(live.percentile_sum / live.totals.evaluated)


def test_split_follows_the_protocol():
    events = [parse_event(raw) for raw in synthetic_messages(600)]
    chosen = positives(events, 4.0)
    result = replay(chosen, "popular", Protocol(min_rating=4.0, pretrain=0.2, holdout=0.1))
    assert result["events"] == len(chosen) - int(0.2 * len(chosen)) - int(0.1 * len(chosen))


def test_evaluate_command_prints_json_on_the_last_line(tmp_path, capsys):
    ratings = tmp_path / "ratings.csv"
    rows = ["userId,movieId,rating,timestamp"]
    for raw in synthetic_messages(800):
        event = json.loads(raw)
        rows.append(f"{event['user']},{event['item']},{event['rating']},{int(event['timestamp'])}")
    ratings.write_text("\n".join(rows) + "\n")
    assert (
        cli.main(["evaluate", "--data", str(ratings), "--model", "popular", "--min-rating", "4"])
        == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["model"] == "popular"
    for key in ("events", "recall@10", "mpr", "popular_recall@10", "update_us", "evaluate_us"):
        assert result[key] is not None
    assert result["seconds"] >= 0


def test_evaluate_command_names_a_bad_model(capsys):
    assert cli.main(["evaluate", "--data", "nowhere", "--model", "nope"]) == 2
    assert "choose one of" in capsys.readouterr().err
