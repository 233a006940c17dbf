"""Pieces every page shares: the store gate, the window picker, the page header."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import pandas as pd
import streamlit as st

from dashboard import loaders
from dashboard.settings import Settings, load_settings
from dashboard.text import ago, duration, escape_markdown, local_time

# Chart windows, in seconds back from the latest checkpoint; None is everything kept.
WINDOWS: dict[str, float | None] = {
    "5 min": 300.0,
    "15 min": 900.0,
    "1 h": 3600.0,
    "6 h": 6 * 3600.0,
    "24 h": 86400.0,
    "All": None,
}
DEFAULT_WINDOW = "15 min"
STORE_KEY = "picked_store"  # session state: the store chosen for one-store pages
T = TypeVar("T")


def settings(pick_store: bool = True) -> Settings:
    """The dashboard's settings, read from the environment on every run, with its stores.

    When RECO_DB names several stores, a page about one store (``pick_store``)
    shows a picker and reads the store chosen; the choice is kept across pages.
    A value that names no store stops the page with one line saying what to fix.
    """
    config = load_settings()
    try:
        stores = loaders.stores(config.db)
    except loaders.Unavailable as exc:
        st.error(str(exc), icon=":material/tune:")
        st.stop()
        raise
    config = replace(config, stores=tuple(stores))
    if len(stores) > 1 and pick_store:
        chosen = st.session_state.get(STORE_KEY)
        index = stores.index(chosen) if chosen in stores else 0
        picked = st.selectbox(
            "Store",
            stores,
            index=index,
            help="RECO_DB names several workers' stores; this page shows one of them. "
            "The Live page shows the whole deployment.",
        )
        st.session_state[STORE_KEY] = picked
        config = replace(config, db=picked)
    return config


def checkpoint_or_stop(config: Settings) -> loaders.Checkpoint:
    """Return the latest checkpoint, or show one friendly line and stop the page.

    While it waits, the page polls the store and reloads itself once the engine
    has written its first checkpoint.
    """
    try:
        return loaders.latest_checkpoint(config.db)
    except loaders.Unavailable as exc:
        st.info(str(exc), icon=":material/hourglass_empty:")
        _reload_when_ready(config)
        st.stop()
        raise  # st.stop() raises; this keeps type checkers honest


def unavailable(exc: loaders.Unavailable) -> None:
    """Say in one line why a panel has nothing to show (the store vanished mid-session)."""
    st.info(str(exc), icon=":material/hourglass_empty:")


def load(loader: Callable[..., T], *args, **kwargs) -> T | None:
    """``loader(*args, **kwargs)``, or None after saying why the panel has nothing to show."""
    try:
        return loader(*args, **kwargs)
    except loaders.Unavailable as exc:
        unavailable(exc)
        return None


def window_picker(key: str) -> float | None:
    """A segmented control choosing how far back charts go; returns seconds or None for all.

    It lives outside the refreshing fragments, so the choice survives every refresh.
    """
    choice = st.segmented_control(
        "Window",
        list(WINDOWS),
        default=DEFAULT_WINDOW,
        required=True,
        key=key,
        label_visibility="collapsed",
    )
    return WINDOWS[choice or DEFAULT_WINDOW]


def cumulative_picker(label: str, key: str) -> bool:
    """A segmented control: cumulative rates (True) or one point per checkpoint interval."""
    choice = st.segmented_control(
        label,
        ["Cumulative", "Per interval"],
        default="Cumulative",
        required=True,
        key=key,
        label_visibility="collapsed",
    )
    return choice != "Per interval"


def _delta(change: str | None, color: str = "normal") -> dict:
    """Keyword arguments for st.metric's delta; no change shows grey and without an arrow."""
    if change is not None and change.lstrip("+-") in ("0", "0%"):
        return {"delta": change, "delta_color": "off", "delta_arrow": "off"}
    return {"delta": change, "delta_color": color}


@dataclass(frozen=True)
class Tile:
    """One headline number in a bordered box, with its change and an optional sparkline."""

    label: str
    value: str
    help: str
    change: str | None = None  # e.g. "+1,200"; None shows no delta
    compared_to: str | None = None  # what the change is measured against
    worse_when_up: bool = False  # rejections and lag: a rise shows red
    trend: Sequence[float] | None = None  # sparkline values, oldest first
    bars: bool = False  # draw the sparkline as bars (counts of discrete things)


def tiles(row: Sequence[Tile]) -> None:
    """A row of equal-height tiles, one column each."""
    for column, tile in zip(st.columns(len(row)), row, strict=True):
        extra = {}
        if tile.change is not None:
            extra = _delta(tile.change, "inverse" if tile.worse_when_up else "normal")
            extra["delta_description"] = tile.compared_to
        column.metric(
            tile.label,
            tile.value,
            border=True,
            height="stretch",
            chart_data=tile.trend,
            chart_type="bar" if tile.bars else "line",
            help=tile.help,
            **extra,
        )


def window_frame(
    config: Settings, loader: Callable[..., pd.DataFrame], window_s: float | None
) -> tuple[loaders.Checkpoint, pd.DataFrame] | None:
    """The latest checkpoint and ``loader``'s frame over the window ending at it.

    None, with one line on the page saying why, when the store cannot be read.
    """
    try:
        checkpoint = loaders.latest_checkpoint(config.db)
        return checkpoint, loader(config.db, checkpoint.id, since=since(checkpoint, window_s))
    except loaders.Unavailable as exc:
        unavailable(exc)
        return None


def since(checkpoint: loaders.Checkpoint, window_s: float | None) -> float:
    """The first Unix second of a window ending at the checkpoint (0.0 for everything)."""
    return 0.0 if window_s is None else checkpoint.time - window_s


def window_label(window_s: float | None) -> str:
    return (
        "since the store was created" if window_s is None else f"over the last {duration(window_s)}"
    )


def checkpoint_caption(config: Settings, checkpoint: loaders.Checkpoint) -> None:
    """One quiet line saying which store and checkpoint the page shows."""
    age = time.time() - checkpoint.time
    st.caption(
        f"Store {escape_markdown(config.db)} · checkpoint {checkpoint.id} written at "
        f"{local_time(checkpoint.time)} ({ago(age)}) · model **{checkpoint.model}**"
    )


def _reload_when_ready(config: Settings) -> None:
    @st.fragment(run_every=config.refresh_s)
    def poll() -> None:
        try:
            loaders.latest_checkpoint(config.db)
        except loaders.Unavailable:
            return
        st.rerun()

    poll()
