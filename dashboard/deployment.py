"""The Live page for several stores: the deployment's totals, its workers and its partitions."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from dashboard import charts, components, loaders
from dashboard.settings import Settings
from dashboard.status import engine_status
from dashboard.text import ago, count, local_time


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _label(worker: str | None, store: str) -> str:
    """A worker by its API address, or by its store where the checkpoint did not say."""
    return worker or store


def headline(config: Settings) -> None:
    """Status line and headline numbers of the whole deployment."""
    deployment = components.load(loaders.deployment, config.stores)
    if deployment is None:
        return
    newest = deployment.newest.checkpoint
    age = time.time() - deployment.time
    status = engine_status(age, newest.interval.interval_s, newest.broker_connected)
    alive = sum(
        engine_status(time.time() - w.time, w.checkpoint.interval.interval_s).state == "alive"
        for w in deployment.workers
    )
    with st.container(horizontal=True, vertical_alignment="center"):
        st.badge(status.label, icon=status.icon, color=status.color)
        st.markdown(
            f"**{len(deployment.workers)} workers** ({alive} checkpointing on time) over "
            f"**{len(deployment.partitions)} partitions** — newest checkpoint **{ago(age)}** "
            f"at {local_time(deployment.time)}."
        )
    if deployment.waiting:
        st.info(
            f"No checkpoint yet in {', '.join(deployment.waiting)}: those workers are "
            "starting, or not running.",
            icon=":material/hourglass_empty:",
        )
    totals = deployment.totals
    per_partition = (
        "Summed over partitions, each at its newest state in any store "
        "(a moved partition counts once)."
    )
    components.tiles(
        [
            components.Tile(
                "Events received", count(totals.received), f"Messages read. {per_partition}"
            ),
            components.Tile(
                "Events/s, all workers",
                f"{deployment.events_per_s:,.0f}",
                "Messages per second over each worker's latest interval, summed over the "
                "workers still checkpointing.",
            ),
            components.Tile(
                "Accepted",
                count(totals.accepted),
                f"Messages that met the contract. {per_partition}",
            ),
            components.Tile(
                "Rejected",
                count(totals.rejected),
                f"Messages that broke the contract. {per_partition}",
            ),
        ]
    )
    components.tiles(
        [
            components.Tile(
                "Positive events",
                count(totals.positive),
                f"The model learns these. {per_partition}",
            ),
            components.Tile(
                "Recall@10, deployment",
                _percent(deployment.recall_at_10),
                "Hits over evaluated events of the whole deployment: each worker weighs "
                "by the events it evaluated.",
            ),
            components.Tile(
                "Recall@10, popularity",
                _percent(deployment.popular_recall_at_10),
                "The same measure for recommending the most popular items.",
            ),
            components.Tile(
                "Consumer lag",
                count(deployment.lag),
                "Messages on the topic not read yet, over the partitions that report it.",
                worse_when_up=True,
            ),
        ]
    )


def workers(config: Settings) -> None:
    """One row per store: who, which partitions, how fast, how good."""
    deployment = components.load(loaders.deployment, config.stores)
    if deployment is None:
        return
    now = time.time()
    rows = [
        {
            "Worker": _label(w.worker, w.store),
            "Store": w.store,
            "State": engine_status(now - w.time, w.checkpoint.interval.interval_s).label,
            "Partitions": ", ".join(map(str, w.partitions)) or "—",
            "Events/s": w.events_per_s,
            "Received (own)": w.totals.received,
            "Recall@10": w.recall_at_10,
            "Evaluated": w.totals.evaluated,
            "Last checkpoint": ago(now - w.time),
        }
        for w in deployment.workers
    ]
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        column_config={
            "Events/s": st.column_config.NumberColumn(format="%.0f"),
            "Recall@10": st.column_config.NumberColumn(format="percent"),
        },
    )
    st.caption(
        "Each worker's own figures: the events it processed itself and its recall@10 "
        "over the events it evaluated; Partitions are those it owned at its last checkpoint."
    )


def partitions(config: Settings) -> None:
    """One row per partition: who holds its newest state, where it is, how far behind."""
    deployment = components.load(loaders.deployment, config.stores)
    if deployment is None:
        return
    if not deployment.partitions:
        st.caption("No worker recorded its partitions yet (older stores, or written offline).")
        return
    st.dataframe(
        partition_frame(deployment.partitions),
        hide_index=True,
        column_config={"Recall@10": st.column_config.NumberColumn(format="percent")},
    )
    st.caption(
        "Each partition's newest state in any store: the worker that wrote it (its owner, "
        "unless marked as moved since), the next offset to read, the lag behind the "
        "broker's end and the partition's own counts, which move with it."
    )


def partition_frame(views: list) -> pd.DataFrame:
    """The partitions table: one row per partition."""
    return pd.DataFrame(
        [
            {
                "Partition": p.partition,
                "Owner": _label(p.worker, p.store) + ("" if p.owned else " (moved since)"),
                "Store": p.store,
                "Offset": p.offset,
                "Lag": p.lag,
                "Received": p.totals.received,
                "Positive": p.totals.positive,
                "Evaluated": p.totals.evaluated,
                "Recall@10": p.totals.model_hits / p.totals.evaluated
                if p.totals.evaluated
                else None,
            }
            for p in views
        ]
    )


def charts_over_time(config: Settings, window_s: float | None) -> None:
    """Lag per partition and events/s per worker over the window."""
    deployment = components.load(loaders.deployment, config.stores)
    if deployment is None:
        return
    since = 0.0 if window_s is None else deployment.time - window_s
    stores = tuple(w.store for w in deployment.workers)
    ids = tuple(w.checkpoint.id for w in deployment.workers)
    lag = components.load(loaders.partition_history, stores, ids, since)
    if lag is not None and lag["lag"].notna().any():
        st.altair_chart(charts.partition_lag_chart(lag), width="stretch")
        st.caption(
            f"Messages behind the broker's end per partition {components.window_label(window_s)}, "
            "as each checkpoint of its owner saw it."
        )
    frames = []
    for w in deployment.workers:
        frame = components.load(loaders.metrics, w.store, w.checkpoint.id, since)
        if frame is not None:
            frames.append(frame.assign(worker=_label(w.worker, w.store)))
    if frames:
        st.altair_chart(charts.worker_throughput_chart(pd.concat(frames)), width="stretch")
        st.caption(
            f"Messages per second each worker read {components.window_label(window_s)}; "
            "each point is one of its checkpoint intervals."
        )


def show(config: Settings) -> None:
    """The whole Live page for a deployment of several stores."""
    try:
        loaders.deployment(config.stores)
    except loaders.Unavailable as exc:
        st.info(str(exc), icon=":material/hourglass_empty:")
        st.stop()
    st.fragment(run_every=config.refresh_s)(headline)(config)
    st.subheader("Workers", anchor=False)
    st.fragment(run_every=config.refresh_s)(workers)(config)
    st.subheader("Partitions", anchor=False)
    st.fragment(run_every=config.refresh_s)(partitions)(config)
    with st.container(horizontal=True, vertical_alignment="bottom"):
        st.subheader("Over time", anchor=False)
        window_s = components.window_picker("deployment_window")
    st.fragment(run_every=config.refresh_s)(charts_over_time)(config, window_s)
