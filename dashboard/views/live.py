"""Live: is the engine running, how fast are events flowing, and what was rejected."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from dashboard import charts, components, loaders
from dashboard.status import NO_BROKER, engine_status
from dashboard.text import ago, count, local_time

RECENT_S = 300.0  # deltas and sparklines look this far back, seconds


def _spark(frame: pd.DataFrame, column: str) -> list[float] | None:
    values = frame[column].dropna()
    return values.tolist() if len(values) >= 2 else None


def _change(value: int | None, previous: pd.Series | None, column: str) -> str | None:
    if value is None or previous is None or pd.isna(previous[column]):
        return None
    return f"{value - int(previous[column]):+,}"


config = components.settings()
st.title("Live")
components.checkpoint_or_stop(config)


@st.fragment(run_every=config.refresh_s)
def headline() -> None:
    try:
        checkpoint = loaders.latest_checkpoint(config.db)
        recent = loaders.metrics(
            config.db, checkpoint.id, since=checkpoint.time - RECENT_S, max_points=1000
        )
    except loaders.Unavailable as exc:
        components.unavailable(exc)
        return
    age = time.time() - checkpoint.time
    interval = checkpoint.interval
    status = engine_status(age, interval.interval_s, checkpoint.broker_connected)
    explanation = status.explanation
    if status is NO_BROKER and checkpoint.stalled_since:
        explanation = (
            f"the engine runs but cannot reach the broker since "
            f"{local_time(checkpoint.stalled_since)}, so no events arrive"
        )
    with st.container(horizontal=True, vertical_alignment="center"):
        st.badge(status.label, icon=status.icon, color=status.color)
        st.markdown(
            f"Last checkpoint **{ago(age)}** at {local_time(checkpoint.time)} — {explanation}."
        )

    previous = recent.iloc[-2] if len(recent) >= 2 else None
    rate = interval.received / interval.interval_s if interval.interval_s else 0.0
    rate_label = "Events/s now" if status.state == "alive" else "Events/s (last interval)"
    every = f"in the last {interval.interval_s:.0f} s interval"
    row = st.columns(4)
    row[0].metric(
        "Events received",
        count(checkpoint.totals.received),
        **components.delta(f"+{interval.received:,}"),
        delta_description=every,
        chart_data=_spark(recent, "received"),
        border=True,
        help="Messages read from the topic since the store was created.",
    )
    rate_change = None if previous is None else f"{rate - previous.events_per_s:+,.0f}"
    row[1].metric(
        rate_label,
        f"{rate:,.0f}",
        **components.delta(rate_change),
        delta_description="vs the interval before",
        chart_data=_spark(recent, "events_per_s"),
        border=True,
        help="Messages per second over the latest checkpoint interval.",
    )
    row[2].metric(
        "Accepted",
        count(checkpoint.totals.accepted),
        **components.delta(f"+{interval.accepted:,}"),
        delta_description=every,
        chart_data=_spark(recent, "accepted"),
        border=True,
        help="Messages that met the event contract and reached the model.",
    )
    row[3].metric(
        "Rejected",
        count(checkpoint.totals.rejected),
        **components.delta(f"+{interval.rejected:,}", "inverse"),
        delta_description=every,
        chart_data=_spark(recent, "rejected"),
        border=True,
        chart_type="bar",
        help="Messages that broke the event contract; see the Data quality page for why.",
    )
    row = st.columns(4)
    row[0].metric(
        "Users",
        count(checkpoint.users),
        **components.delta(_change(checkpoint.users, previous, "users")),
        delta_description="new since the interval before",
        chart_data=_spark(recent, "users"),
        border=True,
        help="Distinct users the model has learned from.",
    )
    row[1].metric(
        "Items",
        count(checkpoint.items),
        **components.delta(_change(checkpoint.items, previous, "items")),
        delta_description="new since the interval before",
        chart_data=_spark(recent, "items"),
        border=True,
        help="Distinct items in the catalogue the model ranks.",
    )
    row[2].metric(
        "Consumer lag",
        count(interval.lag),
        **components.delta(_change(interval.lag, previous, "lag"), "inverse"),
        delta_description="vs the interval before",
        chart_data=_spark(recent, "lag"),
        border=True,
        help="Messages on the topic the engine has not read yet "
        "(— when the broker does not report it).",
    )
    row[3].metric(
        "Positive events",
        count(checkpoint.totals.positive),
        **components.delta(f"+{interval.positive:,}"),
        delta_description=every,
        chart_data=_spark(recent, "positive"),
        border=True,
        help="Accepted events rated at or above the positive threshold; "
        "the model learns from these.",
    )


headline()

with st.container(horizontal=True, vertical_alignment="bottom"):
    st.subheader("Throughput", anchor=False)
    window_s = components.window_picker("live_window")


@st.fragment(run_every=config.refresh_s)
def throughput() -> None:
    try:
        checkpoint = loaders.latest_checkpoint(config.db)
        frame = loaders.metrics(
            config.db, checkpoint.id, since=components.since(checkpoint, window_s)
        )
    except loaders.Unavailable as exc:
        components.unavailable(exc)
        return
    st.altair_chart(charts.throughput_chart(frame), width="stretch")
    st.caption(
        f"Messages per second read from the topic {components.window_label(window_s)}, "
        "split into positive events (which the model learns from) and rejected ones; "
        "each point is one checkpoint interval."
    )


throughput()
