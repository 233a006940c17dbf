"""Cached reads of the store: the only module of the dashboard that imports ``storage``.

Every loader opens the store through a fresh ``StoreReader`` (one short-lived
read-only connection per call, never shared between sessions) and returns plain
data: dataclasses from ``storage.records`` or pandas DataFrames. Loaders that
depend on the model take the latest checkpoint's id, so a new checkpoint
invalidates them while repeated page refreshes are served from the cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from typing import ParamSpec, TypeVar

import pandas as pd
import streamlit as st

from storage import (
    MAX_N,
    MAX_USER_ID_LENGTH,
    Checkpoint,
    Deployment,
    MetricsPoint,
    NoCheckpoint,
    OnlinePoint,
    Recommendations,
    StoreError,
    StoreListError,
    StoreMissing,
    StoreReader,
    read_deployment,
    reason_kind,
    store_paths,
    validate_user_id,
)

__all__ = [
    "MAX_N",
    "reason_kind",
    "MAX_USER_ID_LENGTH",
    "Checkpoint",
    "Deployment",
    "Recommendations",
    "Unavailable",
    "check_user_id",
    "deployment",
    "history",
    "latest_checkpoint",
    "metrics",
    "online_metrics",
    "partition_history",
    "recommend",
    "rejected_counts",
    "rejected_events",
    "stores",
    "user_ids",
]

# A checkpoint is written every few seconds; reading it is cheap, so a short TTL
# keeps the status honest without a query per element.
CHECKPOINT_TTL_S = 1.0
# Everything else is keyed by the checkpoint id; the TTL only bounds memory.
DATA_TTL_S = 300.0
MAX_CHART_POINTS = 600
# Bar widths for rejected counts, seconds: 5 s up to a day.
BUCKETS_S = (5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0, 86400.0)
MAX_BARS = 60
MAX_REASONS = 7

# Particulars such as "(70000 bytes > 65536)" or ", not list" vary per message.

P = ParamSpec("P")
R = TypeVar("R")


class Unavailable(Exception):
    """The store cannot be shown (missing, empty or unreadable); the message says what to do."""


def latest_checkpoint(path: str) -> Checkpoint:
    """The newest checkpoint of the store at ``path``; raises Unavailable without one."""
    return _friendly(_latest_checkpoint, path)


def stores(spec: str) -> list[str]:
    """The stores RECO_DB names (one path, a comma-separated list or a folder of ``*.db``).

    A folder is read anew on each call, so a worker that joins shows up.
    Raises Unavailable saying what to fix when the value names none.
    """
    try:
        return [str(path) for path in store_paths(spec)]
    except StoreListError as exc:
        raise Unavailable(f"RECO_DB={spec} cannot be read: {exc}.") from None


def deployment(paths: tuple[str, ...]) -> Deployment:
    """The deployment's figures from its stores (storage.deployment says how they add up).

    Raises Unavailable naming a store that is missing or unreadable, or
    saying that no store has a checkpoint yet.
    """
    return _friendly(_deployment, paths)


def partition_history(
    paths: tuple[str, ...], checkpoint_ids: tuple[int, ...], since: float = 0.0
) -> pd.DataFrame:
    """Every store's partition rows since ``since`` (Unix seconds), oldest first.

    Columns: time, partition, offset, lag, worker, store. ``checkpoint_ids``
    (each store's latest) keys the cache, so a new checkpoint reloads it.
    """
    return _friendly(_partition_history, paths, checkpoint_ids, since)


def metrics(
    path: str, checkpoint_id: int, since: float = 0.0, max_points: int = MAX_CHART_POINTS
) -> pd.DataFrame:
    """Per-interval metrics since ``since`` (Unix seconds), at most ``max_points`` rows.

    Columns are the fields of ``storage.MetricsPoint`` plus ``start`` (the
    interval's first second) and ``received_per_s``, ``positive_per_s``,
    ``rejected_per_s`` (events/s over the interval).
    """
    return _friendly(_metrics, path, checkpoint_id, since, max_points)


def online_metrics(
    path: str, checkpoint_id: int, since: float = 0.0, max_points: int = MAX_CHART_POINTS
) -> pd.DataFrame:
    """Impressions and clicks of the live API per A/B variant per interval since ``since``.

    Columns are the fields of ``storage.OnlinePoint`` (time, interval_s, variant,
    impressions, clicks) plus ``start``, ``ctr`` (clicks per impression in the
    interval, NaN without impressions), ``impressions_per_s`` and
    ``cumulative_ctr`` (per variant, over the rows returned: the window's CTR
    so far). Oldest first; empty when nothing asked the API yet.
    """
    return _friendly(_online_metrics, path, checkpoint_id, since, max_points)


def rejected_counts(
    path: str, checkpoint_id: int, since: float, until: float, max_bars: int = MAX_BARS
) -> tuple[pd.DataFrame, float]:
    """Rejected messages per kind of reason per time bucket, and the bucket's length (seconds).

    The bucket is the shortest of ``BUCKETS_S`` that fits the window from ``since``
    (0.0: everything kept) to ``until`` into ``max_bars`` bars. Reasons lose their
    details ("payload too large (70000 bytes > 65536)" counts as "payload too
    large"), and all but the ``MAX_REASONS`` commonest are counted as "other".
    """
    if since > 0:
        bucket_s = _bucket_for((until - since) / max_bars)
        frame = _friendly(_rejected_counts, path, checkpoint_id, since, bucket_s)
    else:
        # The window starts at the oldest message kept; the store keeps a bounded
        # number, so a fine first pass stays small.
        bucket_s = BUCKETS_S[3]
        frame = _friendly(_rejected_counts, path, checkpoint_id, 0.0, bucket_s)
        if not frame.empty:
            wanted = _bucket_for((until - frame["time"].min()) / max_bars)
            if wanted > bucket_s:
                bucket_s = wanted
                frame = frame.assign(time=(frame["time"] // bucket_s) * bucket_s)
    return _by_kind(frame), bucket_s


def rejected_events(path: str, checkpoint_id: int, limit: int = 100) -> pd.DataFrame:
    """The latest rejected messages, newest first: time, reason, partition, offset, payload."""
    return _friendly(_rejected_events, path, checkpoint_id, limit)


def user_ids(path: str, checkpoint_id: int, limit: int = 8) -> list[str]:
    """A few known user ids, oldest first, to suggest in the lookup form."""
    return _friendly(_user_ids, path, checkpoint_id, limit)


def check_user_id(user: str) -> str:
    """The id as the store will look it up; raises ValueError saying what is wrong with it."""
    return validate_user_id(user)


def recommend(path: str, checkpoint_id: int, user: str, n: int) -> Recommendations:
    """Top-``n`` items for ``user`` from the latest checkpoint (popularity for unknown users)."""
    return _friendly(_recommend, path, checkpoint_id, check_user_id(user), n)


def history(path: str, checkpoint_id: int, user: str, limit: int = 20) -> pd.DataFrame:
    """The user's most recent positive items, newest first: item, name, time."""
    return _friendly(_history, path, checkpoint_id, check_user_id(user), limit)


def _bucket_for(seconds: float) -> float:
    return next((b for b in BUCKETS_S if b >= seconds), BUCKETS_S[-1])


def _by_kind(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.assign(reason=frame["reason"].map(reason_kind))
    totals = frame.groupby("reason")["count"].sum().sort_values(ascending=False)
    if len(totals) > MAX_REASONS:
        keep = set(totals.index[: MAX_REASONS - 1])
        frame["reason"] = frame["reason"].where(frame["reason"].isin(keep), "other")
    return frame.groupby(["time", "reason"], as_index=False)["count"].sum()


def _friendly(load: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    first = args[0]
    with _translated(", ".join(first) if isinstance(first, tuple) else str(first)):
        return load(*args, **kwargs)


@contextmanager
def _translated(path: str) -> Iterator[None]:
    try:
        yield
    except StoreMissing as exc:
        if "," in path:  # one of several stores: the message names it
            raise Unavailable(f"{str(exc).capitalize()} (or take it out of RECO_DB).") from None
        raise Unavailable(
            f"No store at {path} yet — start the engine with ./run.sh "
            "(or point RECO_DB at an existing store)."
        ) from None
    except NoCheckpoint:
        raise Unavailable(
            f"No checkpoint yet in {path} — start the engine with ./run.sh; "
            "this page fills in as soon as it writes one."
        ) from None
    except StoreError as exc:
        raise Unavailable(f"Cannot read the store: {exc}") from None


@st.cache_data(ttl=CHECKPOINT_TTL_S, show_spinner=False)
def _latest_checkpoint(path: str) -> Checkpoint:
    return StoreReader(path).latest_checkpoint()


@st.cache_data(ttl=CHECKPOINT_TTL_S, show_spinner=False)
def _deployment(paths: tuple[str, ...]) -> Deployment:
    return read_deployment(paths)


@st.cache_data(ttl=DATA_TTL_S, max_entries=16, show_spinner=False)
def _partition_history(
    paths: tuple[str, ...], checkpoint_ids: tuple[int, ...], since: float
) -> pd.DataFrame:
    columns = ["time", "partition", "offset", "lag", "worker", "store"]
    rows = [
        (p.time, p.state.partition, p.state.offset, p.state.lag, p.worker, path)
        for path in paths
        for p in StoreReader(path).partition_history(since=since, max_points=MAX_CHART_POINTS)
    ]
    return pd.DataFrame(rows, columns=columns).sort_values("time", kind="stable")


@st.cache_data(ttl=DATA_TTL_S, max_entries=64, show_spinner=False)
def _metrics(path: str, checkpoint_id: int, since: float, max_points: int) -> pd.DataFrame:
    points = StoreReader(path).metrics(since=since, max_points=max_points)
    frame = _interval_frame(points, MetricsPoint)
    for name in ("received", "positive", "rejected"):
        frame[f"{name}_per_s"] = _per_second(frame, name)
    return frame


@st.cache_data(ttl=DATA_TTL_S, max_entries=64, show_spinner=False)
def _online_metrics(path: str, checkpoint_id: int, since: float, max_points: int) -> pd.DataFrame:
    points = StoreReader(path).online_metrics(since=since, max_points=max_points)
    frame = _interval_frame(points, OnlinePoint)
    shown = frame["impressions"].where(frame["impressions"] > 0)
    frame["ctr"] = frame["clicks"] / shown
    frame["impressions_per_s"] = _per_second(frame, "impressions")
    by_variant = frame.groupby("variant")
    cumulative_shown = by_variant["impressions"].cumsum()
    frame["cumulative_ctr"] = by_variant["clicks"].cumsum() / cumulative_shown.where(
        cumulative_shown > 0
    )
    return frame


def _interval_frame(points: list, kind: type) -> pd.DataFrame:
    """One row per checkpoint interval (the dataclass ``kind``'s fields), with its start time."""
    frame = pd.DataFrame(
        [asdict(point) for point in points], columns=[f.name for f in fields(kind)]
    )
    frame["start"] = frame["time"] - frame["interval_s"]
    return frame


def _per_second(frame: pd.DataFrame, column: str) -> pd.Series:
    """``column`` per second of its interval; 0 for an interval of no length."""
    return (frame[column] / frame["interval_s"].where(frame["interval_s"] > 0)).fillna(0.0)


@st.cache_data(ttl=DATA_TTL_S, max_entries=64, show_spinner=False)
def _rejected_counts(path: str, checkpoint_id: int, since: float, bucket_s: float) -> pd.DataFrame:
    counts = StoreReader(path).rejected_counts(since=since, bucket_s=bucket_s)
    return pd.DataFrame([asdict(c) for c in counts], columns=["time", "reason", "count"])


@st.cache_data(ttl=DATA_TTL_S, max_entries=16, show_spinner=False)
def _rejected_events(path: str, checkpoint_id: int, limit: int) -> pd.DataFrame:
    events = StoreReader(path).rejected_events(limit=limit)
    return pd.DataFrame(
        [asdict(e) for e in events], columns=["time", "reason", "partition", "offset", "payload"]
    )


@st.cache_data(ttl=DATA_TTL_S, max_entries=16, show_spinner=False)
def _user_ids(path: str, checkpoint_id: int, limit: int) -> list[str]:
    return StoreReader(path).user_ids(limit=limit)


@st.cache_data(ttl=DATA_TTL_S, max_entries=256, show_spinner=False)
def _recommend(path: str, checkpoint_id: int, user: str, n: int) -> Recommendations:
    return StoreReader(path).recommend(user, n)


@st.cache_data(ttl=DATA_TTL_S, max_entries=256, show_spinner=False)
def _history(path: str, checkpoint_id: int, user: str, limit: int) -> pd.DataFrame:
    items = StoreReader(path).history(user, limit=limit)
    return pd.DataFrame([asdict(item) for item in items], columns=["item", "name", "time"])
