"""Model: is the model better than popularity, how fast does it learn, is it drifting."""

from __future__ import annotations

import streamlit as st

from dashboard import charts, components, loaders


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _micros(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f} µs" if value >= 100 else f"{value:.1f} µs"


config = components.settings()
st.title("Model quality")
components.checkpoint_or_stop(config)


@st.fragment(run_every=config.refresh_s)
def headline() -> None:
    checkpoint = components.load(loaders.latest_checkpoint, config.db)
    if checkpoint is None:
        return
    components.checkpoint_caption(config, checkpoint)
    model_recall = checkpoint.recall_at_10
    baseline_recall = checkpoint.popular_recall_at_10
    interval = checkpoint.interval
    lift = model_recall / baseline_recall if model_recall is not None and baseline_recall else None
    components.tiles(
        [
            components.Tile(
                "Recall@10, model",
                _percent(model_recall),
                "Cumulative prequential recall@10: the share of evaluated positive events "
                "whose item the model had in its top 10 just before learning it.",
            ),
            components.Tile(
                "Recall@10, popularity",
                _percent(baseline_recall),
                "The same measure for recommending the most popular items to everyone.",
            ),
            components.Tile(
                "Lift over baseline",
                "—" if lift is None else f"×{lift:.2f}",
                "Model recall@10 divided by the popularity baseline's; above ×1.00 the "
                "model recommends better than popularity.",
                change=None if lift is None else f"{lift - 1:+.0%}",
                compared_to="recall vs popularity",
            ),
            components.Tile(
                "Update time per event",
                _micros(interval.update_us),
                "Mean time to learn one positive event, latest interval.",
            ),
            components.Tile(
                "Evaluation time per event",
                _micros(interval.evaluate_us),
                "Mean time to rank the catalogue for one evaluated event, latest interval.",
            ),
        ]
    )
    st.caption(f"{checkpoint.totals.evaluated:,} events evaluated so far.")


headline()

with st.container(horizontal=True, vertical_alignment="bottom"):
    st.subheader("Over time", anchor=False)
    cumulative = components.cumulative_picker("Recall", "model_recall")
    window_s = components.window_picker("model_window")


@st.fragment(run_every=config.refresh_s)
def history() -> None:
    loaded = components.window_frame(config, loaders.metrics, window_s)
    if loaded is None:
        return
    checkpoint, frame = loaded
    st.altair_chart(
        charts.recall_chart(frame, cumulative=cumulative, model=checkpoint.model), width="stretch"
    )
    if cumulative:
        st.caption(
            "Recall@10 since the store was created, measured test-then-learn: the share "
            "of positive events whose item was in the top 10 just before the model "
            "learned it, for the model (blue) and for recommending the most popular "
            "items (grey); higher is better."
        )
    else:
        st.caption(
            "The same recall@10 measured within each checkpoint interval only, so it "
            "shows how the model does on recent events rather than on average."
        )

    left, right = st.columns(2)
    with left:
        st.altair_chart(charts.factor_change_chart(frame, config.drift_threshold), width="stretch")
        st.caption(
            f"How far the item factors moved since the previous checkpoint, relative to "
            f"their size; red bands mark intervals above {config.drift_threshold:.0%} "
            "(RECO_DRIFT_THRESHOLD), where the model is changing fast."
        )
    with right:
        st.altair_chart(
            charts.panel_overlap_chart(frame, config.overlap_threshold), width="stretch"
        )
        st.caption(
            "How much of a fixed panel of users' top 10 stayed the same since the "
            f"previous checkpoint (100% = unchanged); red bands mark intervals below "
            f"{config.overlap_threshold:.0%} (RECO_OVERLAP_THRESHOLD)."
        )

    st.altair_chart(charts.timing_chart(frame), width="stretch")
    st.caption(
        "Mean time the model spends learning one positive event and ranking the "
        "catalogue to evaluate one event; it bounds how many events/s one worker keeps "
        "up with."
    )


history()
