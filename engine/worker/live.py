"""Top-N lists from the live model, the one the worker is learning right now.

The API serves these; they are never read from a checkpoint. Ranking one
user is O(n_items): every item is scored, seen items are excluded, and only
the winners are sorted (engine.kernels.top_n, storage.ranking.top_n compiled).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from engine.kernels import top_n
from engine.processing.processor import StreamProcessor
from engine.worker.clicks import BASELINE, ClickLog, variant_of
from storage import RecommendedItem

POPULAR = "popular"  # what ``model`` says when the list came from item popularity


@dataclass(frozen=True)
class LiveRecommendations:
    """A ranked list for one user, and where it came from.

    ``model`` is the model's name, or "popular" when item popularity ranked the
    list (the baseline variant, or the fallback for a user the model does not
    know yet, which sets ``fallback``).
    """

    user: str
    items: list[RecommendedItem]
    model: str
    fallback: bool
    variant: str


class LiveRecommender:
    """Ranks for a user straight from a StreamProcessor's model, history and popularity.

    It reads the processor's attributes on every call, so it keeps working
    after ``processor.restore()`` replaces them. ``names`` maps item ids to
    display names; ids without one get ``name=None``.
    """

    def __init__(self, processor: StreamProcessor):
        self.processor = processor
        self.names: dict[str, str] = {}

    def recommend(self, user: str, n: int, variant: str) -> LiveRecommendations:
        """The ``n`` best items ``user`` has not liked yet, for the given A/B ``variant``.

        The "baseline" variant ranks by popularity; any other by the model. A
        user the model has not seen gets the most popular items (``fallback``).
        """
        processor = self.processor
        recommender = processor.recommender
        index = recommender.user_index(user)
        if index is None:
            best, scores = top_n(processor.popularity.view, n)
            return self._result(user, best, scores, POPULAR, True, variant)
        exclude = processor.history.items(index)
        if variant == BASELINE:
            best, scores = top_n(processor.popularity.view, n, exclude=exclude)
            return self._result(user, best, scores, POPULAR, False, variant)
        best, scores = top_n(recommender.scores(index), n, exclude=exclude)
        return self._result(user, best, scores, recommender.model, False, variant)

    def _result(
        self,
        user: str,
        best: np.ndarray,
        scores: np.ndarray,
        model: str,
        fallback: bool,
        variant: str,
    ) -> LiveRecommendations:
        ids = self.processor.recommender.item_ids
        names = self.names
        items = [
            RecommendedItem(rank=rank, item=ids[index], name=names.get(ids[index]), score=score)
            for rank, (index, score) in enumerate(
                zip(best.tolist(), scores.tolist(), strict=True), 1
            )
        ]
        return LiveRecommendations(user, items, model, fallback, variant)


@dataclass
class ServeStats:
    """Requests served and the time spent ranking them, since the worker started."""

    requests: int = 0
    rank_s: float = 0.0  # seconds in LiveService.recommend: ranking plus the impression
    max_rank_s: float = 0.0

    def as_dict(self) -> dict:
        mean = 1000 * self.rank_s / self.requests if self.requests else None
        return {
            "requests": self.requests,
            "rank_ms_mean": None if mean is None else round(mean, 4),
            "rank_ms_max": round(1000 * self.max_rank_s, 4),
        }


class LiveService:
    """One request of the online loop: pick the user's A/B variant, rank, log the impression.

    ``baseline_fraction`` of users (a stable hash of their id) get the popularity
    baseline; the rest get the model. ``clicks`` must also see the events (add
    ``clicks.observe`` as a processor listener) to credit clicks.
    """

    def __init__(self, processor: StreamProcessor, clicks: ClickLog, baseline_fraction: float):
        self.ranker = LiveRecommender(processor)
        self.clicks = clicks
        self.baseline_fraction = baseline_fraction
        self.stats = ServeStats()

    def add_names(self, names: dict[str, str]) -> None:
        """Learn (or update) item display names."""
        self.ranker.names.update(names)

    def recommend(self, user: str, n: int, preview: bool = False) -> LiveRecommendations:
        """Rank for ``user`` and, unless ``preview``, count it as an impression.

        A preview (an operator looking at a user's list on the dashboard) is
        not shown to the user, so it must not dilute the CTR.
        """
        started = time.perf_counter()
        variant = variant_of(user, self.baseline_fraction)
        result = self.ranker.recommend(user, n, variant)
        if not preview:
            self.clicks.record(user, [item.item for item in result.items], variant)
        elapsed = time.perf_counter() - started
        stats = self.stats
        stats.requests += 1
        stats.rank_s += elapsed
        stats.max_rank_s = max(stats.max_rank_s, elapsed)
        return result
