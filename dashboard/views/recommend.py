"""Recommend: the top-N items for any user, live from the engine or from the latest checkpoint."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from dashboard import components, live_api, loaders
from dashboard.settings import Settings
from dashboard.text import ago, escape_markdown, local_time, shorten

DEFAULT_N = 10
HISTORY_LIMIT = 20
SUGGESTIONS = 8
RESULT_KEY = "recommend_result"


@dataclass(frozen=True)
class Lookup:
    """What the last submitted lookup showed; kept in session state so it stays on screen."""

    user: str
    n: int
    recommendations: loaders.Recommendations | live_api.LiveRecommendations | None = None
    history: pd.DataFrame | None = None
    problem: str | None = None
    api_url: str = ""
    api_problem: str | None = None  # why the live API gave nothing (the list is from the store)

    @property
    def live(self) -> bool:
        """True when the list came from the running engine's live model."""
        return isinstance(self.recommendations, live_api.LiveRecommendations)


def look_up(config: Settings, checkpoint_id: int, user: str, n: int) -> Lookup:
    """Recommendations and history for ``user``, or a Lookup saying what is wrong with the id.

    The live API comes first; when it does not answer, the latest checkpoint.
    """
    if not user.strip():
        return Lookup(user=user, n=n, problem="Type a user id, or pick one of the known users.")
    try:
        user = loaders.check_user_id(user)
    except ValueError as exc:
        return Lookup(user=user, n=n, problem=f"That user id cannot be looked up: {exc}.")
    path, api_problem = config.db, None
    try:
        recommendations = live_api.recommend(config.api_url, user, n, config.api_token)
    except live_api.ApiUnavailable as exc:
        recommendations, api_problem = None, str(exc)
    try:
        if recommendations is None:
            recommendations = loaders.recommend(path, checkpoint_id, user, n)
        history = loaders.history(path, checkpoint_id, user, HISTORY_LIMIT)
    except loaders.Unavailable as exc:
        return Lookup(user=user, n=n, problem=str(exc))
    return Lookup(
        user=user,
        n=n,
        recommendations=recommendations,
        history=history,
        api_url=config.api_url,
        api_problem=api_problem,
    )


def use_suggestion(config: Settings, checkpoint_id: int) -> None:
    # A clicked suggestion fills the form and runs the lookup at once.
    user = st.session_state.get("recommend_suggestion")
    if user:
        st.session_state["recommend_user"] = user
        n = int(st.session_state.get("recommend_n", DEFAULT_N))
        st.session_state[RESULT_KEY] = look_up(config, checkpoint_id, user, n)
    st.session_state["recommend_suggestion"] = None


def source_line(lookup: Lookup) -> None:
    """Where the list comes from: a green "live" badge, or the checkpoint and its age."""
    recommendations = lookup.recommendations
    with st.container(horizontal=True, vertical_alignment="center"):
        if lookup.live:
            st.badge("Live", icon=":material/bolt:", color="green")
            st.caption(
                f"From the running engine's model, via its API at "
                f"{escape_markdown(lookup.api_url)}."
            )
        else:
            age = ago(time.time() - recommendations.checkpoint_time)
            st.badge(f"Checkpoint, {age}", icon=":material/history:", color="gray")
            st.caption(
                f"The live API at {escape_markdown(lookup.api_url)} gave "
                f"{escape_markdown(lookup.api_problem or 'no answer')}, so this is the latest "
                "checkpoint's model."
            )


def show(lookup: Lookup) -> None:
    if lookup.problem:
        st.warning(lookup.problem, icon=":material/person_off:")
        return
    recommendations = lookup.recommendations
    shown_user = escape_markdown(shorten(lookup.user, 60))
    source_line(lookup)
    if lookup.live and recommendations.variant == "baseline" and not recommendations.fallback:
        st.info(
            f"User **{shown_user}** is in the A/B test's baseline group "
            "(RECO_AB_BASELINE_FRACTION), so the engine shows them the most popular items "
            "they have not seen, not the model's choice.",
            icon=":material/science:",
        )
    if recommendations.fallback:
        known = lookup.history is not None and not lookup.history.empty
        why = (
            "is known, but the store cannot rank for this model on its own"
            if known
            else "is not in the model yet"
        )
        st.info(
            f"User **{shown_user}** {why}, so these are the most popular items "
            "(popularity fallback), not personal recommendations.",
            icon=":material/trending_up:",
        )
    left, right = st.columns([3, 2], gap="large")
    with left:
        table = recommendations_table(recommendations)
        if recommendations.fallback:
            st.subheader(f"Most popular items for {shown_user}", anchor=False)
        else:
            st.subheader(f"Top {len(table)} for user {shown_user}", anchor=False)
        if table.empty:
            st.info("The catalogue has no item this user has not seen yet.")
        else:
            st.dataframe(
                table,
                hide_index=True,
                width="stretch",
                column_config={
                    "Rank": st.column_config.NumberColumn(width="small"),
                    "Item": st.column_config.TextColumn(width="small"),
                    "Name": st.column_config.TextColumn(width="large"),
                    "Score": st.column_config.NumberColumn(
                        format="%.4f",
                        help="Higher ranks first; for the popularity fallback it "
                        "is the item's number of positive events.",
                    ),
                },
            )
        source = "popularity" if recommendations.fallback else f"model {recommendations.model}"
        if lookup.live:
            st.caption(
                f"Live, {source} (A/B variant {recommendations.variant}); items the user "
                "already liked are left out. Looking here is not counted as an impression."
            )
        else:
            st.caption(
                f"From the checkpoint of {local_time(recommendations.checkpoint_time)} "
                f"({ago(time.time() - recommendations.checkpoint_time)}), {source}; items "
                "the user already liked are left out."
            )
        st.download_button(
            "Download CSV",
            table.to_csv(index=False).encode("utf-8"),
            file_name=f"recommendations-{_file_safe(lookup.user)}.csv",
            mime="text/csv",
            icon=":material/download:",
            disabled=table.empty,
        )
    with right:
        st.subheader("Recent history", anchor=False)
        if lookup.history is None or lookup.history.empty:
            st.caption("No positive events from this user in the store.")
        else:
            st.dataframe(history_table(lookup.history), hide_index=True, width="stretch")
            st.caption("The user's latest positive events, newest first.")


def recommendations_table(recommendations: loaders.Recommendations) -> pd.DataFrame:
    return pd.DataFrame(
        [(r.rank, r.item, r.name or "—", r.score) for r in recommendations.items],
        columns=["Rank", "Item", "Name", "Score"],
    )


def history_table(history: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Item": history["item"],
            "Name": history["name"].fillna("—"),
            "When": [local_time(t) for t in history["time"]],
        }
    )


def _file_safe(user: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", user)[:40].strip("._") or "user"


config = components.settings()
st.title("Recommend")
checkpoint = components.checkpoint_or_stop(config)
st.caption(
    "Look up the top-N items for any user: live from the running engine when its API "
    "answers, otherwise from the latest checkpoint. Unknown users get the most popular items."
)

known = loaders.user_ids(config.db, checkpoint.id, SUGGESTIONS)
if known:
    st.pills(
        "Known users",
        known,
        key="recommend_suggestion",
        on_change=use_suggestion,
        help="A few users the model has learned from; click one to look it up.",
        args=(config, checkpoint.id),
        format_func=lambda user: shorten(user, 24),
    )

with st.form("recommend_form", border=True):
    user_col, n_col, button_col = st.columns([4, 1, 1], vertical_alignment="bottom")
    user = user_col.text_input(
        "User id", key="recommend_user", placeholder="e.g. " + (known[0] if known else "42")
    )
    n = n_col.number_input(
        "How many", min_value=1, max_value=loaders.MAX_N, value=DEFAULT_N, step=1, key="recommend_n"
    )
    submitted = button_col.form_submit_button("Recommend", type="primary", width="stretch")

if submitted:
    st.session_state[RESULT_KEY] = look_up(config, checkpoint.id, user, int(n))

if RESULT_KEY in st.session_state:
    show(st.session_state[RESULT_KEY])
