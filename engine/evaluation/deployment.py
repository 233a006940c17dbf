"""A deployment replayed in process: P partitions, N workers, item statistics shared every K events.

The live deployment (docs/scale-out.md) keys events by user, so a user's
events go to one partition, ``murmur2(user) mod P`` as Kafka's default
partitioner puts them; a worker learns its partitions' events and sends its
increments of the item statistics once per checkpoint, and the others add
them when they arrive. Between two exchanges each worker lacks the others'
latest likes: the shared-statistics lag. Here the same StreamProcessor code
runs N times in one process, with no broker and no clock: partition ``p``
belongs to worker ``p mod N``, every positive event goes, in the stream's
order, to its user's partition's owner through the partition path
(StreamProcessor.observe_in), and every ``share_every`` events each worker's
increments (drain_shared) are applied by every other (apply_shared). So the
effect of splitting the stream is measured apart from timing, and the same
run gives the same figures on any machine.

What differs from a live deployment, on purpose:

- Workers break ties from one seeded stream of draws, shared, so that the
  comparison with one worker carries no noise of its own: with
  ``share_every=1`` a shared-statistics model ranks every event exactly as
  one worker does.
- Extra pre-training epochs (``epochs > 1``) are learned by each event's
  owner only: StreamProcessor.learn_again teaches the model and captures no
  increment, so the other workers never see them (a live engine has no
  epochs at all).
- Each worker learns its events in the stream's order; a live worker takes
  them in per-partition batches, which interleave differently.

>>> from engine.sources.events import Interaction
>>> events = [Interaction(str(u), str(i), 5.0, float(t)) for t, (u, i) in
...           enumerate([(1, 1), (2, 1), (1, 2), (2, 2), (3, 1), (3, 2)] * 3)]
>>> figures = simulate(events, "popular", Protocol(pretrain=0.5, holdout=0.0),
...                    Deployment(partitions=4, workers=2), progress=False)
>>> figures["events"], sum(worker["events"] for worker in figures["per_worker"])
(9, 9)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from aiokafka.partitioner import murmur2

from engine.evaluation.prequential import Draws
from engine.evaluation.replay import DEFAULT_SEED, Protocol, protocol_processor, split_points
from engine.models.features import FeatureTable
from engine.processing.processor import StreamProcessor
from engine.sources.events import Interaction
from engine.sources.progress import Progress

# Positive events between two exchanges of increments, by default: what the
# whole stream moves on by in one second (a live worker sends its increments
# every second, engine.worker.agents.SHARE_EVERY_S) with two workers replaying
# MovieLens 100k at full speed: some 10,600 messages/s each
# (docs/benchmarks.md), 21% of them ratings of 5, the protocol's positives.
# docs/evaluation.md ("Several workers") measures the lag's effect from 1 to 22,000.
DEFAULT_SHARE_EVERY = 4_000


@dataclass(frozen=True)
class Deployment:
    """How many partitions and workers, and how often they exchange increments (events)."""

    partitions: int = 1
    workers: int = 1
    share_every: int = DEFAULT_SHARE_EVERY

    def __post_init__(self) -> None:
        if self.partitions < 1 or self.workers < 1 or self.share_every < 1:
            raise ValueError(
                f"partitions ({self.partitions}), workers ({self.workers}) and share_every "
                f"({self.share_every}) must each be at least 1"
            )

    @property
    def single(self) -> bool:
        """One worker on one partition: the engine as one process runs it."""
        return self.partitions == 1 and self.workers == 1

    def owned(self, worker: int) -> list[int]:
        """The partitions ``worker`` owns: p mod N, as a round-robin assignment gives them."""
        return [p for p in range(self.partitions) if p % self.workers == worker]


def user_partition(user: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives events keyed by ``user`` (UTF-8 bytes).

    The live engine's rule too (engine.worker.routing.user_partition; a test
    checks the two agree).

    >>> [user_partition(user, 4) for user in ("1", "2", "196")]
    [3, 0, 0]
    """
    return (murmur2(user.encode()) & 0x7FFFFFFF) % partitions


def simulate(
    events: Sequence[Interaction],
    model: str,
    protocol: Protocol,
    deployment: Deployment,
    params: dict | None = None,
    seed: int = DEFAULT_SEED,
    features: FeatureTable | None = None,
    progress: bool | None = None,
) -> dict:
    """Run ``protocol`` over positive ``events`` (already sorted) as ``deployment`` runs them.

    Returns replay()'s figures for the whole deployment (hits and percentile
    ranks summed over workers, so recall@n is weighted by evaluated events)
    and ``per_worker``, each worker's own.
    """
    started = time.perf_counter()
    draws = Draws(seed + 1)
    workers = [
        protocol_processor(events, model, protocol, params, seed, features, draws)
        for _ in range(deployment.workers)
    ]
    for worker in workers:
        worker.publishing = deployment.workers > 1
    partition_of: dict[str, int] = {}
    routes = np.empty((len(events), 3), dtype=np.int64)  # worker, partition, offset
    next_offset = [0] * deployment.partitions
    for e, event in enumerate(events):
        p = partition_of.get(event.user)
        if p is None:
            p = partition_of[event.user] = user_partition(event.user, deployment.partitions)
        routes[e] = (p % deployment.workers, p, next_offset[p])
        next_offset[p] += 1

    pretrain_end, holdout_end = split_points(len(events), protocol)
    bar = Progress(len(events) + (protocol.epochs - 1) * pretrain_end, enabled=progress)
    k = deployment.share_every
    # Exchanges fall every k events of the stream, whatever the phase; a phase's
    # end cuts a segment too, since its events are evaluated or not.
    cuts = sorted({*range(k, len(events), k), pretrain_end, holdout_end, len(events)})
    start = 0
    before = None
    for end in cuts:
        if start == holdout_end and before is None:
            before = [_timings(worker) for worker in workers]
        if end > start:
            _feed(workers, events, routes, start, end, start >= holdout_end)
            bar.advance(end - start)
        if end % k == 0 or end == len(events):
            _exchange(workers)
        if end == pretrain_end:
            _epochs(workers, events, routes, pretrain_end, protocol.epochs, seed, bar)
        start = end
    if before is None:
        before = [_timings(worker) for worker in workers]
    bar.close()
    return _figures(workers, before, deployment, model, protocol, len(events), started)


def _feed(workers, events, routes, start: int, end: int, evaluate: bool) -> None:
    """Give events[start:end] to their owners, each in the stream's order, by partition runs."""
    for w, worker in enumerate(workers):
        mine = np.flatnonzero(routes[start:end, 0] == w) + start
        run_start = 0
        for r in range(1, len(mine) + 1):
            if r == len(mine) or routes[mine[r], 1] != routes[mine[run_start], 1]:
                run = mine[run_start:r].tolist()
                worker.observe_in(
                    int(routes[run[0], 1]),
                    [(int(routes[e, 2]), events[e]) for e in run],
                    evaluate,
                )
                run_start = r


def _exchange(workers: list[StreamProcessor]) -> None:
    """Every worker's increments since the last exchange, applied by every other worker."""
    if len(workers) < 2:
        return
    drained = [worker.drain_shared() for worker in workers]
    for w, worker in enumerate(workers):
        for other, shared in enumerate(drained):
            if other != w:
                for partition, shared_events in sorted(shared.items()):
                    worker.apply_shared(partition, shared_events)


def _epochs(workers, events, routes, pretrain_end: int, epochs: int, seed: int, bar) -> None:
    """Extra passes over the pre-training events, each learned again by its owner only."""
    # The same seeded shuffle as replay(): one worker learns in the very same order.
    shuffle = np.random.default_rng(seed)
    for _ in range(epochs - 1):
        for position in shuffle.permutation(pretrain_end).tolist():
            workers[int(routes[position, 0])].learn_again(events[position])
            bar.advance()


def _timings(processor: StreamProcessor) -> tuple[float, int, float, int]:
    t = processor.timings
    return t.update_s, t.updates, t.evaluate_s, t.evaluations


def _figures(
    workers: list[StreamProcessor],
    before: list[tuple[float, int, float, int]],
    deployment: Deployment,
    model: str,
    protocol: Protocol,
    n_positive: int,
    started: float,
) -> dict:
    n = protocol.n
    timing = np.zeros(4)
    per_worker = []
    hits = popular_hits = evaluated = 0
    percentile_sum = 0.0
    for w, (worker, earlier) in enumerate(zip(workers, before, strict=True)):
        timing += np.array(_timings(worker)) - np.array(earlier)
        totals = worker.totals
        hits += totals.model_hits
        popular_hits += totals.popular_hits
        evaluated += totals.evaluated
        percentile_sum += worker.percentile_sum
        per_worker.append(
            {
                "worker": w,
                "partitions": deployment.owned(w),
                "positives": totals.positive,
                "events": totals.evaluated,
                **_rates(totals.model_hits, worker.percentile_sum, totals.popular_hits,
                         totals.evaluated, n),
                "shared_applied": worker.shared_applied,
                "users": worker.recommender.n_users,
                "items": worker.recommender.n_items,
            }
        )  # fmt: skip
    update_s, updates, evaluate_s, evaluations = timing.tolist()
    first = workers[0]
    return {
        "model": model,
        "params": dict(first.recommender.params),
        "positives": n_positive,
        "events": evaluated,
        **_rates(hits, percentile_sum, popular_hits, evaluated, n),
        "update_us": 1e6 * update_s / updates if updates else None,
        "evaluate_us": 1e6 * evaluate_s / evaluations if evaluations else None,
        "seconds": round(time.perf_counter() - started, 2),
        "users": sum(worker.recommender.n_users for worker in workers),
        "items": max(worker.recommender.n_items for worker in workers),
        "protocol": asdict(protocol),
        "partitions": deployment.partitions,
        "workers": deployment.workers,
        "share_every": deployment.share_every,
        "per_worker": per_worker,
    }


def _rates(hits: int, percentile_sum: float, popular_hits: int, evaluated: int, n: int) -> dict:
    return {
        f"recall@{n}": hits / evaluated if evaluated else None,
        "mpr": percentile_sum / evaluated if evaluated else None,
        f"popular_recall@{n}": popular_hits / evaluated if evaluated else None,
    }
