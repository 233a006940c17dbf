"""Data quality: which messages break the event contract, why, and when."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, components, loaders
from dashboard.text import count, local_time, shorten

LATEST_REJECTED = 100
PAYLOAD_CHARS = 120


def _share(share: float | None) -> str:
    if share is None:
        return "—"
    return "0%" if share == 0 else f"{share:.2%}"


def rejected_table(events: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Time": [local_time(t) for t in events["time"]],
            "Reason": events["reason"],
            "Partition": events["partition"],
            "Offset": events["offset"],
            "Payload": [shorten(p, PAYLOAD_CHARS) for p in events["payload"]],
        }
    )


config = components.settings()
st.title("Data quality")
components.checkpoint_or_stop(config)


@st.fragment(run_every=config.refresh_s)
def headline() -> None:
    checkpoint = components.load(loaders.latest_checkpoint, config.db)
    if checkpoint is None:
        return
    totals, interval = checkpoint.totals, checkpoint.interval
    share = totals.rejected / totals.received if totals.received else None
    every = f"in the last {interval.interval_s:.0f} s interval"
    components.tiles(
        [
            components.Tile(
                "Rejected messages",
                count(totals.rejected),
                "Messages that broke the event contract since the store was created.",
                change=f"+{interval.rejected:,}",
                compared_to=every,
                worse_when_up=True,
            ),
            components.Tile(
                "Share of all messages",
                _share(share),
                "Rejected messages divided by all messages received.",
            ),
            components.Tile(
                "Accepted messages",
                count(totals.accepted),
                "Messages that met the contract and reached the model.",
                change=f"+{interval.accepted:,}",
                compared_to=every,
            ),
        ]
    )


headline()

with st.container(horizontal=True, vertical_alignment="bottom"):
    st.subheader("Rejected over time", anchor=False)
    window_s = components.window_picker("quality_window")


@st.fragment(run_every=config.refresh_s)
def rejected() -> None:
    try:
        checkpoint = loaders.latest_checkpoint(config.db)
        counts, bucket_s = loaders.rejected_counts(
            config.db, checkpoint.id, components.since(checkpoint, window_s), checkpoint.time
        )
        latest = loaders.rejected_events(config.db, checkpoint.id, LATEST_REJECTED)
    except loaders.Unavailable as exc:
        components.unavailable(exc)
        return
    if counts.empty:
        st.success(
            f"No message was rejected {components.window_label(window_s)}.",
            icon=":material/check_circle:",
        )
    else:
        st.altair_chart(charts.rejected_chart(counts, bucket_s), width="stretch")
        st.caption(
            f"Rejected messages {components.window_label(window_s)}, per reason, one bar "
            f"per {bucket_s:.0f} s; details such as sizes are left out of the reasons "
            "so alike failures add up."
        )

    st.subheader("Latest rejected messages", anchor=False)
    if latest.empty:
        st.caption("None kept in the store.")
        return
    st.dataframe(
        rejected_table(latest),
        hide_index=True,
        width="stretch",
        column_config={
            "Partition": st.column_config.NumberColumn(width="small"),
            "Offset": st.column_config.NumberColumn(width="small", format="%d"),
            "Payload": st.column_config.TextColumn(width="large"),
        },
    )
    st.caption(
        f"The {len(latest)} newest rejected messages, newest first; payloads are cut "
        f"at {PAYLOAD_CHARS} characters."
    )


rejected()
