"""Altair chart builders: plain functions from DataFrames to charts, no Streamlit.

Every time-series takes a frame with a ``time`` column in Unix seconds (the end
of each checkpoint interval) and plots it on a local-time axis. The model is
always blue and the popularity baseline always grey, on every chart.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

MODEL_COLOR = "#2563eb"
BASELINE_COLOR = "#9ca3af"
RECEIVED_COLOR = "#475569"
POSITIVE_COLOR = "#16a34a"
REJECTED_COLOR = "#dc2626"
UPDATE_COLOR = MODEL_COLOR
EVALUATE_COLOR = "#f59e0b"
DRIFT_COLOR = "#dc2626"

BASELINE_LABEL = "Popularity baseline"
# Streamlit sizes a chart as a whole: title, legend and axes included, pixels.
HEIGHT = 340

Chart = alt.Chart | alt.LayerChart


def throughput_chart(frame: pd.DataFrame) -> Chart:
    """Events/s received, positive and rejected per checkpoint interval."""
    series = {
        "received_per_s": "Received",
        "positive_per_s": "Positive",
        "rejected_per_s": "Rejected",
    }
    data = _with_time(frame)[["when", *series]].rename(columns=series)
    colors = [RECEIVED_COLOR, POSITIVE_COLOR, REJECTED_COLOR]
    return _multi_line(data, list(series.values()), colors, "events/s", ",.0f", "Events per second")


def recall_chart(frame: pd.DataFrame, cumulative: bool = False, model: str = "model") -> Chart:
    """Prequential recall@10 of the model and of the popularity baseline over time.

    ``cumulative`` plots the running figure since the store was created instead
    of each checkpoint interval's own.
    """
    prefix = "cumulative_" if cumulative else ""
    model_label = f"Model ({model})"
    series = {f"{prefix}recall_at_10": model_label, f"{prefix}popular_recall_at_10": BASELINE_LABEL}
    data = _with_time(frame)[["when", *series]].rename(columns=series)
    title = "Cumulative recall@10" if cumulative else "Recall@10 per checkpoint interval"
    return _multi_line(
        data,
        list(series.values()),
        [MODEL_COLOR, BASELINE_COLOR],
        "recall@10",
        ".1%",
        title,
        dashed=BASELINE_LABEL,
        axis_format=".0%",
    )


def ctr_chart(frame: pd.DataFrame, cumulative: bool = True, model: str = "model") -> Chart:
    """Click-through rate of the live API's lists, model variant against the baseline.

    ``frame`` is long (one row per variant per interval, as loaders.online_metrics
    gives it); ``cumulative`` plots the CTR since the first row instead of each
    interval's own.
    """
    column = "cumulative_ctr" if cumulative else "ctr"
    labels = _variant_labels(model)
    data = _by_variant(frame, column, labels)
    title = "CTR since the window's start" if cumulative else "CTR per checkpoint interval"
    return _multi_line(
        data,
        list(labels.values()),
        [MODEL_COLOR, BASELINE_COLOR],
        "CTR (clicked lists / lists shown)",
        ".1%",
        title,
        dashed=BASELINE_LABEL,
        axis_format=".0%",
    )


def impressions_chart(frame: pd.DataFrame, model: str = "model") -> Chart:
    """Lists served per second by the live API, per A/B variant."""
    labels = _variant_labels(model)
    data = _by_variant(frame, "impressions_per_s", labels)
    return _multi_line(
        data,
        list(labels.values()),
        [MODEL_COLOR, BASELINE_COLOR],
        "impressions/s",
        ",.1f",
        "Impressions per second",
        dashed=BASELINE_LABEL,
    )


def timing_chart(frame: pd.DataFrame) -> Chart:
    """Mean time to learn one positive event and to evaluate one event, in microseconds."""
    series = {
        "update_us": "Update (learn one event)",
        "evaluate_us": "Evaluation (rank for one event)",
    }
    data = _with_time(frame)[["when", *series]].rename(columns=series)
    return _multi_line(
        data,
        list(series.values()),
        [UPDATE_COLOR, EVALUATE_COLOR],
        "µs per event",
        ",.1f",
        "Time per event",
        axis_format=",.0f",
    )


def factor_change_chart(frame: pd.DataFrame, threshold: float) -> Chart:
    """Relative change of the item factors per checkpoint, shaded where it passes ``threshold``."""
    return _drift_chart(
        frame,
        "factor_change",
        threshold,
        above=True,
        axis_title="change of item factors",
        title="Item-factor change",
    )


def panel_overlap_chart(frame: pd.DataFrame, threshold: float) -> Chart:
    """Mean top-10 overlap of the user panel between checkpoints, shaded below ``threshold``."""
    return _drift_chart(
        frame,
        "panel_overlap",
        threshold,
        above=False,
        axis_title="top-10 overlap (Jaccard)",
        title="Top-10 overlap of the panel",
        domain=(0.0, 1.0),
    )


def rejected_chart(counts: pd.DataFrame, bucket_s: float) -> alt.Chart:
    """Rejected messages per reason, stacked, one bar per ``bucket_s``-second bucket."""
    data = _with_time(counts).assign(until=lambda d: d["when"] + bucket_s * 1000)
    return (
        alt.Chart(data, title="Rejected messages by reason")
        .mark_bar()
        .encode(
            x=_time_axis(data),
            x2="until:T",
            y=alt.Y("sum(count):Q", title="messages", stack="zero"),
            color=alt.Color(
                "reason:N",
                title="Reason",
                legend=alt.Legend(orient="top", direction="horizontal", columns=3, labelLimit=320),
            ),
            tooltip=[
                alt.Tooltip("when:T", title="From", format="%H:%M:%S"),
                alt.Tooltip("reason:N", title="Reason"),
                alt.Tooltip("sum(count):Q", title="Messages", format=",d"),
            ],
        )
        .properties(height=HEIGHT)
    )


def partition_lag_chart(frame: pd.DataFrame) -> alt.Chart:
    """Consumer lag per partition over time, one line per partition, whoever owned it.

    ``frame`` is long, as loaders.partition_history gives it: time, partition,
    lag, worker (one row per partition per checkpoint of any store).
    """
    data = _with_time(frame.dropna(subset=["lag"]))
    data = data.assign(partition=data["partition"].map(lambda p: f"partition {p}"))
    return (
        alt.Chart(data, title="Consumer lag per partition")
        .mark_line(interpolate="step-after", strokeWidth=2, point=alt.OverlayMarkDef(size=18))
        .encode(
            x=_time_axis(data),
            y=alt.Y("lag:Q", title="messages behind", axis=alt.Axis(format=",.0f")),
            color=alt.Color(
                "partition:N",
                title=None,
                legend=alt.Legend(orient="top", direction="horizontal", labelLimit=320),
            ),
            tooltip=[
                alt.Tooltip("when:T", title="Time", format="%H:%M:%S"),
                alt.Tooltip("partition:N", title="Partition"),
                alt.Tooltip("worker:N", title="Worker"),
                alt.Tooltip("lag:Q", title="Lag", format=",d"),
            ],
        )
        .properties(height=HEIGHT)
    )


def worker_throughput_chart(frame: pd.DataFrame) -> alt.Chart:
    """Events/s received per worker per checkpoint interval, one line per worker.

    ``frame`` is long: time, received_per_s and worker (its label).
    """
    data = _with_time(frame)
    return (
        alt.Chart(data, title="Events per second by worker")
        .mark_line(interpolate="monotone", strokeWidth=2)
        .encode(
            x=_time_axis(data),
            y=alt.Y("received_per_s:Q", title="events/s", axis=alt.Axis(format=",.0f")),
            color=alt.Color(
                "worker:N",
                title=None,
                legend=alt.Legend(orient="top", direction="horizontal", labelLimit=320),
            ),
            tooltip=[
                alt.Tooltip("when:T", title="Time", format="%H:%M:%S"),
                alt.Tooltip("worker:N", title="Worker"),
                alt.Tooltip("received_per_s:Q", title="Events/s", format=",.0f"),
            ],
        )
        .properties(height=HEIGHT)
    )


def _variant_labels(model: str) -> dict[str, str]:
    return {"model": f"Model ({model})", "baseline": BASELINE_LABEL}


def _by_variant(frame: pd.DataFrame, column: str, labels: dict[str, str]) -> pd.DataFrame:
    """One row per time, one column per variant (named by ``labels``), from a long frame."""
    wide = frame.pivot_table(
        index="time", columns="variant", values=column, aggfunc="last", dropna=False
    )
    wide = wide.reindex(columns=list(labels)).rename(columns=labels).reset_index()
    wide.columns.name = None
    return _with_time(wide)


def _with_time(frame: pd.DataFrame) -> pd.DataFrame:
    # Epoch milliseconds are unambiguous: Vega-Lite shows them in the viewer's local time.
    data = frame.copy()
    data["when"] = data["time"] * 1000.0
    if "start" in data:
        data["from"] = data["start"] * 1000.0
    return data


def _time_axis(data: pd.DataFrame) -> alt.X:
    # Vega's default labels are 12-hour without AM/PM; spell the clock out instead.
    span_s = (data["when"].max() - data["when"].min()) / 1000 if len(data) else 0.0
    if span_s <= 15 * 60:
        time_format = "%H:%M:%S"
    elif span_s <= 86400:
        time_format = "%H:%M"
    else:
        time_format = "%d %b %H:%M"
    return alt.X(
        "when:T",
        title="Local time",
        axis=alt.Axis(format=time_format, labelOverlap=True, labelFlush=True),
    )


def _multi_line(
    data: pd.DataFrame,
    series: list[str],
    colors: list[str],
    unit: str,
    number_format: str,
    title: str,
    dashed: str | None = None,
    axis_format: str | None = None,
) -> alt.LayerChart:
    axis_format = axis_format or number_format
    color = alt.Color(
        "series:N",
        title=None,
        sort=series,
        scale=alt.Scale(domain=series, range=colors),
        legend=alt.Legend(orient="top", direction="horizontal", labelLimit=320),
    )
    dash = alt.StrokeDash(
        "series:N",
        legend=None,
        sort=series,
        scale=alt.Scale(domain=series, range=[[6, 4] if s == dashed else [1, 0] for s in series]),
    )
    lines = (
        alt.Chart(data)
        .transform_fold(series, as_=["series", "value"])
        .mark_line(interpolate="monotone", strokeWidth=2)
        .encode(
            x=_time_axis(data),
            y=alt.Y("value:Q", title=unit, axis=alt.Axis(format=axis_format)),
            color=color,
            strokeDash=dash,
        )
    )
    hover = alt.selection_point(
        fields=["when"], nearest=True, on="pointerover", empty=False, clear="pointerout"
    )
    tooltips = [alt.Tooltip("when:T", title="Time", format="%H:%M:%S")]
    tooltips += [alt.Tooltip(f"{_field(s)}:Q", title=s, format=number_format) for s in series]
    rule = (
        alt.Chart(data)
        .mark_rule(color="#64748b", strokeWidth=1)
        .encode(
            x="when:T",
            opacity=alt.condition(hover, alt.value(0.6), alt.value(0.0)),
            tooltip=tooltips,
        )
        .add_params(hover)
    )
    return alt.layer(lines, rule, title=title).properties(height=HEIGHT)


def _drift_chart(
    frame: pd.DataFrame,
    column: str,
    threshold: float,
    *,
    above: bool,
    axis_title: str,
    title: str,
    domain: tuple[float, float] | None = None,
) -> alt.LayerChart:
    data = _with_time(frame)[["when", "from", column]]
    passed = data[column] > threshold if above else data[column] < threshold
    y_scale = alt.Scale(domain=list(domain)) if domain else alt.Scale(zero=True)
    bands = (
        alt.Chart(data[passed.fillna(False)])
        .mark_rect(color=DRIFT_COLOR, opacity=0.15)
        .encode(x="from:T", x2="when:T")
    )
    line = (
        alt.Chart(data)
        .mark_line(
            color=MODEL_COLOR,
            interpolate="monotone",
            strokeWidth=2,
            point=alt.OverlayMarkDef(size=18, color=MODEL_COLOR),
        )
        .encode(
            x=_time_axis(data),
            y=alt.Y(f"{column}:Q", title=axis_title, scale=y_scale, axis=alt.Axis(format=".0%")),
            tooltip=[
                alt.Tooltip("when:T", title="Time", format="%H:%M:%S"),
                alt.Tooltip(f"{column}:Q", title=axis_title, format=".1%"),
            ],
        )
    )
    side = "above" if above else "below"
    rule_data = pd.DataFrame(
        {"threshold": [threshold], "label": [f"drift threshold {threshold:.0%} ({side} = drift)"]}
    )
    rule = (
        alt.Chart(rule_data)
        .mark_rule(color=DRIFT_COLOR, strokeDash=[4, 4], strokeWidth=1.5)
        .encode(y="threshold:Q")
    )
    label = (
        alt.Chart(rule_data)
        .mark_text(color=DRIFT_COLOR, align="right", baseline="bottom", dy=-3, x="width")
        .encode(y="threshold:Q", text="label:N")
    )
    return alt.layer(bands, line, rule, label, title=title).properties(height=HEIGHT)


def _field(name: str) -> str:
    # Vega-Lite reads dots and brackets in field names as nested access.
    return name.replace(".", "\\.").replace("[", "\\[").replace("]", "\\]")
