"""Offline prequential evaluation: replay a MovieLens file through the live engine's code.

The protocol is FluRS's (Vinagre et al. 2014): positive events (rating >=
``min_rating``) in timestamp order (stable); the first ``pretrain`` share
trains the model (``epochs`` passes), the next ``holdout`` share is learned
incrementally, and every remaining event is first ranked, then learned
(test-then-learn). Ranking, learning and counting are StreamProcessor's own
``observe``, so these figures are the ones the engine reports live.

>>> from engine.sources.events import Interaction
>>> events = [Interaction(str(u), str(i), 5.0, float(t)) for t, (u, i) in
...           enumerate([(1, 1), (2, 1), (1, 2), (2, 2), (3, 1), (3, 2)])]
>>> replay(events, "popular", Protocol(pretrain=0.5, holdout=0.0), progress=False)["events"]
3
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.evaluation.prequential import Draws
from engine.models.features import FeatureTable, read_features
from engine.processing.processor import ProcessorConfig, StreamProcessor
from engine.sources.events import Interaction
from engine.sources.movielens import read_ratings
from engine.sources.progress import Progress

if TYPE_CHECKING:
    from engine.evaluation.deployment import Deployment

DEFAULT_SEED = 42


@dataclass(frozen=True)
class Protocol:
    """How a stream of ratings is split and scored (shares are of the positive events)."""

    min_rating: float = 5.0
    pretrain: float = 0.2
    holdout: float = 0.1
    epochs: int = 1
    n: int = 10  # recall@n

    def __post_init__(self) -> None:
        if not (self.pretrain >= 0.0 and self.holdout >= 0.0 and self.pretrain + self.holdout < 1):
            raise ValueError(
                f"pretrain ({self.pretrain}) and holdout ({self.holdout}) must be "
                "shares >= 0 that leave events to evaluate (sum below 1)"
            )
        if self.epochs < 1 or self.n < 1:
            raise ValueError(f"epochs ({self.epochs}) and n ({self.n}) must be at least 1")


def positives(ratings: Sequence[Interaction], min_rating: float) -> list[Interaction]:
    """The positive events in timestamp order; equal timestamps keep the file's order."""
    chosen = [r for r in ratings if r.rating >= min_rating]
    return sorted(chosen, key=lambda r: r.timestamp)


def split_points(n_events: int, protocol: Protocol) -> tuple[int, int]:
    """(end of pre-training, end of hold-out) as event counts: the rest is evaluated."""
    pretrain_end = int(n_events * protocol.pretrain)
    return pretrain_end, pretrain_end + int(n_events * protocol.holdout)


def protocol_processor(
    events: Sequence[Interaction],
    model: str,
    protocol: Protocol,
    params: dict | None,
    seed: int,
    features: FeatureTable | None,
    draws: Draws | None = None,
) -> StreamProcessor:
    """The engine's processor as the protocol runs it over ``events``."""
    return StreamProcessor(
        ProcessorConfig(
            model=model,
            model_params=params,
            min_rating=protocol.min_rating,
            # Known items are every item the user ever liked: no bound in an evaluation.
            history_limit=len(events) + 1,
            panel_size=0,
            seed=seed,
            top_n=protocol.n,
        ),
        features=features,
        draws=draws,
    )


def replay(
    events: Sequence[Interaction],
    model: str,
    protocol: Protocol = Protocol(),
    params: dict | None = None,
    seed: int = DEFAULT_SEED,
    features: FeatureTable | None = None,
    progress: bool | None = None,
) -> dict:
    """Run the protocol over positive ``events`` (already sorted) and return the figures.

    ``progress`` None shows a progress line on standard error when it is a terminal.
    """
    started = time.perf_counter()
    processor = protocol_processor(events, model, protocol, params, seed, features)
    pretrain_end, holdout_end = split_points(len(events), protocol)
    bar = Progress(len(events) + (protocol.epochs - 1) * pretrain_end, enabled=progress)
    _observe(processor, events[:pretrain_end], False, bar)
    # FluRS shuffles the training events between epochs; so does this (seeded).
    shuffle = np.random.default_rng(seed)
    for _ in range(protocol.epochs - 1):
        for position in shuffle.permutation(pretrain_end).tolist():
            processor.learn_again(events[position])
            bar.advance()
    _observe(processor, events[pretrain_end:holdout_end], False, bar)
    before = _copy_timings(processor)
    _observe(processor, events[holdout_end:], True, bar)
    bar.close()
    return _result(processor, model, protocol, before, len(events), time.perf_counter() - started)


def _observe(processor: StreamProcessor, events: list, evaluate: bool, bar: Progress) -> None:
    """Test (if ``evaluate``) and learn ``events`` in order, in runs, advancing ``bar``."""
    for start in range(0, len(events), _RUN):
        run = events[start : start + _RUN]
        processor.observe_all(run, evaluate)
        bar.advance(len(run))


_RUN = 1024  # events per observe_all() call: the progress bar moves between them


def evaluate_file(
    path: str | Path,
    model: str,
    protocol: Protocol = Protocol(),
    params: dict | None = None,
    seed: int = DEFAULT_SEED,
    progress: bool | None = None,
    deployment: Deployment | None = None,
) -> dict:
    """Replay a MovieLens rating file (u.data, ratings.dat or ratings.csv) through ``model``.

    ``deployment`` (engine.evaluation.deployment) simulates several
    partitions and workers; None or one of each is one engine, as replay().
    """
    from engine.evaluation.deployment import Deployment, simulate  # it builds on this module

    deployment = deployment or Deployment()
    ratings = read_ratings(path, sort=False)
    events = positives(
        [Interaction(r.user, r.item, r.rating, r.timestamp) for r in ratings], protocol.min_rating
    )
    features = read_features(path)
    if deployment.single:
        result = replay(events, model, protocol, params, seed, features, progress)
        result |= {
            "partitions": 1,
            "workers": 1,
            "share_every": deployment.share_every,
            "per_worker": [_one_worker(result, protocol.n)],
        }
    else:
        result = simulate(events, model, protocol, deployment, params, seed, features, progress)
    return {"data": str(path), **result, "side_features": features is not None}


def _one_worker(result: dict, n: int) -> dict:
    """The per_worker entry of a single engine: its figures are the deployment's."""
    keys = ("positives", "events", f"recall@{n}", "mpr", f"popular_recall@{n}", "users", "items")
    return {
        "worker": 0,
        "partitions": [0],
        **{key: result[key] for key in keys},
        "shared_applied": 0,
    }


def _copy_timings(processor: StreamProcessor) -> tuple[float, int, float, int]:
    t = processor.timings
    return t.update_s, t.updates, t.evaluate_s, t.evaluations


def _result(
    processor: StreamProcessor,
    model: str,
    protocol: Protocol,
    before: tuple[float, int, float, int],
    n_positive: int,
    seconds: float,
) -> dict:
    totals, t = processor.totals, processor.timings
    update_s, updates = t.update_s - before[0], t.updates - before[1]
    evaluate_s, evaluations = t.evaluate_s - before[2], t.evaluations - before[3]
    evaluated = totals.evaluated
    n = protocol.n
    params = {k: v for k, v in processor.recommender.params.items()}
    return {
        "model": model,
        "params": params,
        "positives": n_positive,
        "events": evaluated,
        f"recall@{n}": totals.model_hits / evaluated if evaluated else None,
        "mpr": processor.percentile_sum / evaluated if evaluated else None,
        f"popular_recall@{n}": totals.popular_hits / evaluated if evaluated else None,
        "update_us": 1e6 * update_s / updates if updates else None,
        "evaluate_us": 1e6 * evaluate_s / evaluations if evaluations else None,
        "seconds": round(seconds, 2),
        "users": processor.recommender.n_users,
        "items": processor.recommender.n_items,
        "protocol": asdict(protocol),
    }
