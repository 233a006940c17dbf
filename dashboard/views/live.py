"""Live: is the engine running, how fast are events flowing, and what was rejected."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from dashboard import charts, components, deployment, loaders
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


config = components.settings(pick_store=False)
st.title("Live")
if len(config.stores) > 1:
    deployment.show(config)
    st.stop()
components.checkpoint_or_stop(config)


@st.fragment(run_every=config.refresh_s)
def headline() -> None:
    checkpoint = components.load(loaders.latest_checkpoint, config.db)
    if checkpoint is None:
        return
    since = checkpoint.time - RECENT_S
    recent = components.load(loaders.metrics, config.db, checkpoint.id, since, max_points=1000)
    if recent is None:
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
    every = f"in the last {interval.interval_s:.0f} s interval"
    components.tiles(
        [
            components.Tile(
                "Events received",
                count(checkpoint.totals.received),
                "Messages read from the topic since the store was created.",
                change=f"+{interval.received:,}",
                compared_to=every,
                trend=_spark(recent, "received"),
            ),
            components.Tile(
                "Events/s now" if status.state == "alive" else "Events/s (last interval)",
                f"{rate:,.0f}",
                "Messages per second over the latest checkpoint interval.",
                change=None if previous is None else f"{rate - previous.events_per_s:+,.0f}",
                compared_to="vs the interval before",
                trend=_spark(recent, "events_per_s"),
            ),
            components.Tile(
                "Accepted",
                count(checkpoint.totals.accepted),
                "Messages that met the event contract and reached the model.",
                change=f"+{interval.accepted:,}",
                compared_to=every,
                trend=_spark(recent, "accepted"),
            ),
            components.Tile(
                "Rejected",
                count(checkpoint.totals.rejected),
                "Messages that broke the event contract; see the Data quality page for why.",
                change=f"+{interval.rejected:,}",
                compared_to=every,
                worse_when_up=True,
                trend=_spark(recent, "rejected"),
                bars=True,
            ),
        ]
    )
    components.tiles(
        [
            components.Tile(
                "Users",
                count(checkpoint.users),
                "Distinct users the model has learned from.",
                change=_change(checkpoint.users, previous, "users"),
                compared_to="new since the interval before",
                trend=_spark(recent, "users"),
            ),
            components.Tile(
                "Items",
                count(checkpoint.items),
                "Distinct items in the catalogue the model ranks.",
                change=_change(checkpoint.items, previous, "items"),
                compared_to="new since the interval before",
                trend=_spark(recent, "items"),
            ),
            components.Tile(
                "Consumer lag",
                count(interval.lag),
                "Messages on the topic the engine has not read yet "
                "(— when the broker does not report it).",
                change=_change(interval.lag, previous, "lag"),
                compared_to="vs the interval before",
                worse_when_up=True,
                trend=_spark(recent, "lag"),
            ),
            components.Tile(
                "Positive events",
                count(checkpoint.totals.positive),
                "Accepted events rated at or above the positive threshold; "
                "the model learns from these.",
                change=f"+{interval.positive:,}",
                compared_to=every,
                trend=_spark(recent, "positive"),
            ),
        ]
    )


headline()

with st.container(horizontal=True, vertical_alignment="bottom"):
    st.subheader("Throughput", anchor=False)
    window_s = components.window_picker("live_window")


@st.fragment(run_every=config.refresh_s)
def throughput() -> None:
    loaded = components.window_frame(config, loaders.metrics, window_s)
    if loaded is None:
        return
    _, frame = loaded
    st.altair_chart(charts.throughput_chart(frame), width="stretch")
    st.caption(
        f"Messages per second read from the topic {components.window_label(window_s)}, "
        "split into positive events (which the model learns from) and rejected ones; "
        "each point is one checkpoint interval."
    )


throughput()


@st.fragment(run_every=config.refresh_s)
def partitions() -> None:
    checkpoint = components.load(loaders.latest_checkpoint, config.db)
    if checkpoint is None or not checkpoint.partitions:
        return  # a store written before partition rows, or offline
    st.subheader("Partitions", anchor=False)
    worker = checkpoint.worker or "this worker"
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "Partition": p.partition,
                    "Offset": p.offset,
                    "Lag": p.lag,
                    "Received": p.totals.received,
                    "Positive": p.totals.positive,
                }
                for p in checkpoint.partitions
            ]
        ),
        hide_index=True,
    )
    st.caption(f"The partitions {worker} owned at its last checkpoint, and each one's counts.")


partitions()
