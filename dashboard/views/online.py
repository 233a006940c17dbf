"""Online: do users take what the live API shows them, and more from the model than from popularity?"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, components, loaders
from dashboard.text import count

NO_IMPRESSIONS = (
    "No recommendations served yet in this window. Every list the live API gives "
    "(GET /recommend/{user} on the engine) counts as an impression; ./run.sh's "
    "closed-loop demo users ask for them all the time."
)


def totals(frame: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """(impressions, clicks) per variant over the whole frame."""
    sums = frame.groupby("variant")[["impressions", "clicks"]].sum()
    return {
        variant: (int(sums.loc[variant, "impressions"]), int(sums.loc[variant, "clicks"]))
        for variant in ("model", "baseline")
        if variant in sums.index
    }


def ctr(shown_clicked: tuple[int, int] | None) -> float | None:
    if not shown_clicked or not shown_clicked[0]:
        return None
    return shown_clicked[1] / shown_clicked[0]


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


config = components.settings()
st.title("Online")
components.checkpoint_or_stop(config)
st.caption(
    "Each list the live API serves is an impression; it is clicked when the same user "
    "later likes one of its items (a positive event) within the click window "
    "(RECO_CLICK_WINDOW, event time). A fixed share of users, chosen by a hash of their "
    "id, get the popularity baseline instead of the model (RECO_AB_BASELINE_FRACTION)."
)

with st.container(horizontal=True, vertical_alignment="bottom"):
    st.subheader("Model against the baseline", anchor=False)
    cumulative = components.cumulative_picker("CTR", "online_ctr")
    window_s = components.window_picker("online_window")


@st.fragment(run_every=config.refresh_s)
def online() -> None:
    loaded = components.window_frame(config, loaders.online_metrics, window_s)
    if loaded is None:
        return
    checkpoint, frame = loaded
    summed = totals(frame)
    if not sum(shown for shown, _ in summed.values()):
        st.info(NO_IMPRESSIONS, icon=":material/visibility_off:")
        return
    model_ctr, baseline_ctr = ctr(summed.get("model")), ctr(summed.get("baseline"))
    lift = model_ctr / baseline_ctr - 1 if model_ctr is not None and baseline_ctr else None
    latest = frame[frame["time"] == frame["time"].max()]
    rate = float(latest["impressions_per_s"].sum())
    span = components.window_label(window_s)
    components.tiles(
        [
            components.Tile(
                f"CTR, model ({checkpoint.model})",
                _percent(model_ctr),
                f"Clicked lists per list served to users on the model, {span}.",
            ),
            components.Tile(
                "CTR, popularity baseline",
                _percent(baseline_ctr),
                f"The same for the users served the most popular items, {span}.",
            ),
            components.Tile(
                "Lift",
                "—" if lift is None else f"{lift:+.0%}",
                "How much higher the model's CTR is than the baseline's (model / baseline - 1).",
            ),
            components.Tile(
                "Impressions/s now",
                f"{rate:,.1f}",
                "Lists served per second over the latest checkpoint interval, both variants.",
            ),
        ]
    )
    shown = {variant: count(s) for variant, (s, _) in summed.items()}
    st.caption(
        f"{shown.get('model', '0')} lists from the model and {shown.get('baseline', '0')} "
        f"from the baseline {span}."
    )
    st.altair_chart(
        charts.ctr_chart(frame, cumulative=cumulative, model=checkpoint.model), width="stretch"
    )
    st.caption(
        "CTR of the model's lists (blue) and of the popularity baseline's (grey), "
        + (
            "counted from the start of the window."
            if cumulative
            else "within each checkpoint interval (noisy when few lists are served)."
        )
        + " A click is counted in the interval of the event that made it."
    )
    st.altair_chart(charts.impressions_chart(frame, model=checkpoint.model), width="stretch")
    st.caption("Lists served per second to each group of users, per checkpoint interval.")


online()
