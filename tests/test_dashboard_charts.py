"""The chart builders: the right fields, encodings and colours, without Streamlit."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import pytest

from dashboard import charts

START = 1_760_000_000.0  # Unix seconds


def metrics_frame(n: int = 20, interval_s: float = 5.0, start: float = START) -> pd.DataFrame:
    """A metrics frame shaped like dashboard.loaders.metrics returns."""
    time = start + interval_s * np.arange(1, n + 1)
    received = np.full(n, 1500)
    return pd.DataFrame(
        {
            "time": time,
            "start": time - interval_s,
            "interval_s": interval_s,
            "received": received,
            "positive": received // 2,
            "rejected": np.full(n, 10),
            "received_per_s": received / interval_s,
            "positive_per_s": received / 2 / interval_s,
            "rejected_per_s": 10 / interval_s,
            "recall_at_10": np.linspace(0.02, 0.09, n),
            "popular_recall_at_10": np.full(n, 0.07),
            "cumulative_recall_at_10": np.linspace(0.02, 0.06, n),
            "cumulative_popular_recall_at_10": np.full(n, 0.07),
            "update_us": np.full(n, 9.0),
            "evaluate_us": np.full(n, 50.0),
            "factor_change": [None, *np.linspace(0.2, 0.01, n - 1)],
            "panel_overlap": [None, *np.linspace(0.3, 0.9, n - 1)],
        }
    )


def spec(chart: alt.TopLevelMixin) -> dict:
    return chart.to_dict()


def layer_data(chart: dict, layer: dict) -> list[dict]:
    name = layer.get("data", chart.get("data"))["name"]
    return chart["datasets"][name]


def test_throughput_plots_three_rates_against_local_time():
    chart = spec(charts.throughput_chart(metrics_frame()))
    lines = chart["layer"][0]
    assert lines["transform"][0]["fold"] == ["Received", "Positive", "Rejected"]
    assert lines["encoding"]["x"]["field"] == "when"
    assert lines["encoding"]["x"]["type"] == "temporal"
    assert lines["encoding"]["x"]["title"] == "Local time"
    assert lines["encoding"]["y"]["title"] == "events/s"
    assert lines["encoding"]["color"]["scale"]["range"] == [
        charts.RECEIVED_COLOR,
        charts.POSITIVE_COLOR,
        charts.REJECTED_COLOR,
    ]
    rows = layer_data(chart, lines)
    assert len(rows) == 20
    # Times go to the browser as epoch milliseconds, never as raw Unix seconds.
    assert rows[0]["when"] == (START + 5.0) * 1000
    assert rows[0]["Received"] == 300.0


@pytest.mark.parametrize(
    ("cumulative", "title", "model_values"),
    [
        (False, "Recall@10 per checkpoint interval", "recall_at_10"),
        (True, "Cumulative recall@10", "cumulative_recall_at_10"),
    ],
)
def test_recall_puts_model_and_baseline_on_one_chart(cumulative, title, model_values):
    frame = metrics_frame()
    chart = spec(charts.recall_chart(frame, cumulative=cumulative, model="bprmf"))
    assert chart["title"] == title
    lines = chart["layer"][0]
    assert lines["transform"][0]["fold"] == ["Model (bprmf)", charts.BASELINE_LABEL]
    assert lines["encoding"]["color"]["scale"] == {
        "domain": ["Model (bprmf)", charts.BASELINE_LABEL],
        "range": [charts.MODEL_COLOR, charts.BASELINE_COLOR],
    }
    assert lines["encoding"]["strokeDash"]["scale"]["range"] == [[1, 0], [6, 4]]
    assert lines["encoding"]["y"]["axis"]["format"] == ".0%"
    rows = layer_data(chart, lines)
    assert [row["Model (bprmf)"] for row in rows] == pytest.approx(frame[model_values].tolist())


def test_hovering_a_time_shows_every_series():
    chart = spec(charts.recall_chart(metrics_frame()))
    rule = chart["layer"][1]
    assert rule["mark"]["type"] == "rule"
    assert [t["title"] for t in rule["encoding"]["tooltip"]] == [
        "Time",
        "Model (model)",
        charts.BASELINE_LABEL,
    ]
    assert chart["params"][0]["select"]["nearest"] is True


def test_timing_is_in_microseconds_per_event():
    chart = spec(charts.timing_chart(metrics_frame()))
    lines = chart["layer"][0]
    assert lines["encoding"]["y"]["title"] == "µs per event"
    assert lines["transform"][0]["fold"] == [
        "Update (learn one event)",
        "Evaluation (rank for one event)",
    ]


def test_factor_change_shades_intervals_above_the_threshold():
    frame = metrics_frame()
    chart = spec(charts.factor_change_chart(frame, threshold=0.05))
    bands, line, rule, label = chart["layer"]
    assert bands["mark"]["type"] == "rect"
    assert bands["encoding"]["x"]["field"] == "from" and bands["encoding"]["x2"]["field"] == "when"
    shaded = layer_data(chart, bands)
    assert len(shaded) == int((frame["factor_change"] > 0.05).sum()) > 0
    assert all(row["factor_change"] > 0.05 for row in shaded)
    assert line["mark"]["color"] == charts.MODEL_COLOR
    assert line["encoding"]["y"]["field"] == "factor_change"
    assert layer_data(chart, rule) == [
        {"threshold": 0.05, "label": "drift threshold 5% (above = drift)"}
    ]
    assert rule["encoding"]["y"]["field"] == "threshold"
    assert label["mark"]["type"] == "text"


def test_panel_overlap_shades_intervals_below_the_threshold():
    frame = metrics_frame()
    chart = spec(charts.panel_overlap_chart(frame, threshold=0.5))
    bands, line = chart["layer"][:2]
    shaded = layer_data(chart, bands)
    assert len(shaded) == int((frame["panel_overlap"] < 0.5).sum()) > 0
    assert all(row["panel_overlap"] < 0.5 for row in shaded)
    assert line["encoding"]["y"]["scale"]["domain"] == [0.0, 1.0]


def test_rejected_bars_stack_reasons_per_bucket():
    counts = pd.DataFrame(
        {"time": [START, START, START + 60], "reason": ["a", "b", "a"], "count": [3, 1, 2]}
    )
    chart = spec(charts.rejected_chart(counts, bucket_s=60))
    assert chart["mark"]["type"] == "bar"
    encoding = chart["encoding"]
    assert encoding["x"]["field"] == "when" and encoding["x2"]["field"] == "until"
    assert encoding["y"] == {
        "aggregate": "sum",
        "field": "count",
        "stack": "zero",
        "title": "messages",
        "type": "quantitative",
    }
    assert encoding["color"]["field"] == "reason"
    rows = chart["datasets"][chart["data"]["name"]]
    assert rows[0]["until"] - rows[0]["when"] == 60_000


@pytest.mark.parametrize(
    ("span_s", "time_format"),
    [(10 * 60, "%H:%M:%S"), (6 * 3600, "%H:%M"), (3 * 86400, "%d %b %H:%M")],
)
def test_the_time_axis_spells_out_a_24_hour_clock(span_s, time_format):
    frame = metrics_frame(n=10, interval_s=span_s / 9)
    chart = spec(charts.throughput_chart(frame))
    assert chart["layer"][0]["encoding"]["x"]["axis"]["format"] == time_format


def test_model_and_baseline_colours_are_the_same_everywhere():
    frame = metrics_frame()
    recall = spec(charts.recall_chart(frame))["layer"][0]["encoding"]["color"]["scale"]["range"]
    drift = spec(charts.factor_change_chart(frame, 0.05))["layer"][1]["mark"]["color"]
    overlap = spec(charts.panel_overlap_chart(frame, 0.5))["layer"][1]["mark"]["color"]
    assert recall[0] == drift == overlap == charts.MODEL_COLOR
    assert recall[1] == charts.BASELINE_COLOR


@pytest.mark.parametrize(
    "build",
    [
        charts.throughput_chart,
        charts.recall_chart,
        charts.timing_chart,
        lambda f: charts.factor_change_chart(f, 0.05),
        lambda f: charts.panel_overlap_chart(f, 0.5),
    ],
)
def test_an_empty_window_still_gives_a_valid_chart(build):
    chart = spec(build(metrics_frame().iloc[0:0]))
    assert "layer" in chart


def test_charts_never_carry_more_rows_than_they_are_given():
    frame = metrics_frame(n=600)
    chart = spec(charts.throughput_chart(frame))
    assert sum(len(rows) for rows in chart["datasets"].values()) <= 600
