"""Plain dataclasses exchanged with the store: what the engine writes, what readers get."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

import numpy as np


@dataclass(frozen=True)
class OnlineCounts:
    """What one A/B variant of the live API did in one checkpoint interval.

    An impression is one recommendation list served; a click is an impression
    from which the same user later took an item (a positive event) within the
    click window. Clicks are counted in the interval whose events made them.
    """

    variant: str  # "model" or "baseline"
    impressions: int
    clicks: int


@dataclass(frozen=True)
class OnlinePoint:
    """One variant's impressions and clicks over one interval (or bucket of them)."""

    time: float  # end of the interval, Unix seconds
    interval_s: float
    variant: str
    impressions: int
    clicks: int

    @property
    def ctr(self) -> float | None:
        """Clicks per impression, or None without impressions."""
        return _ratio(self.clicks, self.impressions)

    @property
    def impressions_per_s(self) -> float:
        return self.impressions / self.interval_s if self.interval_s else 0.0


# A reason's particulars: "(...)" anywhere, or ", not ..." at its end.
_PARTICULARS = re.compile(r"\s*\([^)]*\)|,\s*not\s.*$")


def reason_kind(reason: str) -> str:
    """A rejection reason without its particulars: a label of few values, for counting by kind.

    >>> reason_kind("payload too large (70000 bytes > 65536)")
    'payload too large'
    >>> reason_kind("'rating' must be a number, not a string")
    "'rating' must be a number"
    """
    return _PARTICULARS.sub("", reason).strip() or reason


@dataclass(frozen=True)
class RejectedEvent:
    """A message that failed the event contract, kept for inspection."""

    time: float  # Unix seconds when the engine saw it
    reason: str
    partition: int
    offset: int
    payload: str  # truncated, decoded with replacement characters


@dataclass
class Totals:
    """Event counters: since the store was created, or (IntervalMetrics) over one interval."""

    received: int = 0
    accepted: int = 0
    positive: int = 0
    rejected: int = 0
    evaluated: int = 0
    model_hits: int = 0
    popular_hits: int = 0

    def since(self, start: Totals) -> Totals:
        """The counts from ``start`` to these.

        >>> Totals(received=10, rejected=2).since(Totals(received=4))
        Totals(received=6, accepted=0, positive=0, rejected=2, evaluated=0, model_hits=0, popular_hits=0)
        """
        return Totals(
            **{f.name: getattr(self, f.name) - getattr(start, f.name) for f in fields(Totals)}
        )

    def plus(self, other: Totals) -> Totals:
        """These counts and ``other``'s together (two partitions', two workers')."""
        return Totals(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(Totals)}
        )

    @property
    def recall_at_10(self) -> float | None:
        """Prequential recall@10 of the model: hits over evaluated events (None before any)."""
        return _ratio(self.model_hits, self.evaluated)

    @property
    def popular_recall_at_10(self) -> float | None:
        return _ratio(self.popular_hits, self.evaluated)


@dataclass
class PartitionState:
    """One partition of the events topic as a checkpoint saw it: where it is, and its counts.

    A partition's counters move with it from worker to worker (through the
    changelog topic), so the deployment's totals are, per partition, the
    state with the highest ``offset`` in any store, summed over partitions.
    """

    partition: int
    offset: int  # next offset of the events topic to process
    totals: Totals  # the partition's events, whoever processed them
    lag: int | None = None  # messages behind the broker's end at the checkpoint, where known


@dataclass(frozen=True)
class PartitionPoint:
    """One partition as one checkpoint of one store saw it: when, by which worker, and its state."""

    time: float  # of the checkpoint, Unix seconds
    checkpoint_id: int
    worker: str | None
    state: PartitionState


@dataclass
class IntervalMetrics(Totals):
    """What happened between two checkpoints; counts are for the interval only."""

    interval_s: float = 0.0
    update_us: float | None = None  # mean time to learn one positive event
    evaluate_us: float | None = None  # mean time to evaluate one sampled event
    lag: int | None = None  # messages behind the broker's end, where it reports it
    factor_change: float | None = None  # ||V_now - V_prev||_F / ||V_prev||_F
    panel_overlap: float | None = None  # mean Jaccard of the panel's top-10 lists


@dataclass
class ModelState:
    """Everything needed to rank and to resume learning.

    Shapes: ``user_factors`` (n_users, k) float32, ``item_factors`` (n_items, k)
    float32, ``item_bias`` and ``item_counts`` (n_items,) float32. Row ``i`` belongs
    to ``user_ids[i]`` / ``item_ids[i]``.
    """

    model: str
    params: dict
    score_rule: str  # see storage.ranking.SCORE_RULES
    user_ids: list[str]
    item_ids: list[str]
    user_factors: np.ndarray
    item_factors: np.ndarray
    item_bias: np.ndarray
    item_counts: np.ndarray  # popularity baseline: positive events per item
    histories: dict[int, list[int]] = field(default_factory=dict)  # user -> items, oldest first


@dataclass
class CheckpointWrite:
    """One checkpoint as the engine hands it to the store.

    Only users touched since the previous checkpoint are in ``touched_users``
    / ``history_added``. Items likewise when ``touched_items`` is given: then
    row ``j`` of ``item_factors``, ``item_bias`` and ``item_counts`` belongs
    to item ``touched_items[j]``. Without it they hold every item, in order
    (models whose shared state moves every item, like fm and sketch).
    """

    time: float
    topic: str
    offsets: dict[int, int]  # partition -> next offset to consume
    totals: Totals
    interval: IntervalMetrics
    model: str
    params: dict
    score_rule: str
    n_users: int
    n_items: int
    new_user_ids: list[str]  # ids for indices n_users_before .. n_users-1, in order
    new_item_ids: list[str]
    touched_users: np.ndarray  # (m,) int64 user indices
    touched_user_factors: np.ndarray  # (m, k) float32
    item_factors: np.ndarray  # (n_items or len(touched_items), k) float32
    item_bias: np.ndarray  # (n_items or len(touched_items),) float32
    item_counts: np.ndarray  # (n_items or len(touched_items),) float32
    history_added: list[tuple[int, int, float, int]]  # (user, item, event time, seq)
    history_removed: list[tuple[int, int]]  # (user, item) evicted by the per-user bound
    rejected: list[RejectedEvent] = field(default_factory=list)
    # Rejected messages since the store was created, by reason_kind(); sums to totals.rejected.
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    broker_connected: bool | None = None  # None: not known (e.g. written offline)
    stalled_since: float | None = None  # Unix seconds the broker became unreachable
    rng_state: dict | None = None  # the engine's random draws, to continue them on restore
    online: list[OnlineCounts] = field(default_factory=list)  # one per A/B variant served
    touched_items: np.ndarray | None = None  # (m,) int64 item indices, sorted; None: all
    # The partitions this worker owned at the checkpoint (a deployment's workers
    # split them), and who the worker is ("host:port" of its API).
    partitions: list[PartitionState] = field(default_factory=list)
    worker: str | None = None
    # Where the worker is in the deployment's shared item statistics:
    # {"read": {partition: next offset of <topic>.items}, "applied": {partition:
    # events offset below which every positive event is counted}}; None alone.
    shared: dict | None = None


@dataclass(frozen=True)
class Checkpoint:
    """The latest checkpoint as a reader sees it."""

    id: int
    time: float
    model: str
    params: dict
    topic: str
    offsets: dict[int, int]
    totals: Totals
    interval: IntervalMetrics
    users: int
    items: int
    # The engine's view of the broker when it wrote this checkpoint; None for
    # checkpoints written without a broker (offline evaluation, older stores).
    broker_connected: bool | None = None
    stalled_since: float | None = None  # Unix seconds; None while connected
    rng_state: dict | None = None  # numpy bit generator state at the checkpoint
    # Rejected messages since the store was created, by reason_kind(); empty in
    # stores written before migration 0012, which counted only the total.
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    shared: dict | None = None  # CheckpointWrite.shared; None in stores of a worker alone
    # The partitions the worker owned at this checkpoint, by partition, and the
    # worker ("host:port" of its API); empty and None in checkpoints written
    # before migration 0013 or without a broker.
    partitions: list[PartitionState] = field(default_factory=list)
    worker: str | None = None

    @property
    def stalled(self) -> bool:
        """True when the engine could not reach the broker at this checkpoint."""
        return self.broker_connected is False

    @property
    def recall_at_10(self) -> float | None:
        return self.totals.recall_at_10

    @property
    def popular_recall_at_10(self) -> float | None:
        return self.totals.popular_recall_at_10


@dataclass(frozen=True)
class MetricsPoint:
    """One checkpoint interval, for time-series charts."""

    time: float
    interval_s: float
    received: int
    accepted: int
    positive: int
    rejected: int
    events_per_s: float
    recall_at_10: float | None  # interval
    popular_recall_at_10: float | None  # interval
    cumulative_recall_at_10: float | None
    cumulative_popular_recall_at_10: float | None
    update_us: float | None
    evaluate_us: float | None
    users: int
    items: int
    lag: int | None
    factor_change: float | None
    panel_overlap: float | None


@dataclass(frozen=True)
class RecommendedItem:
    rank: int  # 1-based
    item: str
    name: str | None
    score: float


@dataclass(frozen=True)
class Recommendations:
    """Top-N items for a user; ``fallback`` is True when popularity was used."""

    user: str
    items: list[RecommendedItem]
    fallback: bool
    model: str
    checkpoint_time: float


@dataclass(frozen=True)
class HistoryItem:
    item: str
    name: str | None
    time: float  # event time, Unix seconds


@dataclass(frozen=True)
class RejectedCount:
    time: float  # start of the bucket, Unix seconds
    reason: str
    count: int


def _ratio(hits: int, total: int) -> float | None:
    return hits / total if total else None
