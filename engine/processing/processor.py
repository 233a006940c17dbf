"""The engine's work per message, independent of Faust: parse, evaluate, learn, count.

The Faust agent, the evaluator and the benchmarks all drive this one class, so
the live engine and the offline numbers come from the same code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from engine.evaluation.prequential import TOP_N, Draws, break_ties, percentile_rank, sampled
from engine.models.baseline import PopularityCounts
from engine.models.features import FeatureTable
from engine.models.history import UserHistory
from engine.models.registry import DEFAULT_MODEL, Recommender
from engine.processing.partitions import PartitionShare
from engine.processing.snapshot import CheckpointCapture
from engine.sources.events import Interaction, InvalidEvent, parse_event, preview
from storage import (
    RejectedEvent,
    Totals,
    reason_kind,
)

log = logging.getLogger(__name__)

# Rejected messages kept per checkpoint interval; more are counted, not stored.
MAX_REJECTED_PER_INTERVAL = 10_000
# One positive event in this many learns and ranks in two timed steps; the
# others are learned in compiled runs, untimed (a pair of clock reads per
# step costs about as much as the step, and a timed event splits its run).
# 1 in 16 cost 20 us per message in runs of 32 (ML-100k, in process), 1 in
# 64 cost 17; at 8,000 messages/s that still times some 300 events a checkpoint.
TIMED_EVERY = 64
# Positive events learned in one compiled call at most: bounds the queue's memory.
MAX_QUEUED = 1024
# observe_run's per-event arrays: user, item, items registered by then,
# evaluate, time, sequence number (as the queue's tuples).
_RUN_DTYPES = (np.int64, np.int64, np.int64, np.bool_, np.float64, np.int64)


@dataclass(frozen=True)
class ProcessorConfig:
    model: str = DEFAULT_MODEL
    model_params: dict | None = None
    min_rating: float = 4.0
    eval_fraction: float = 1.0
    history_limit: int = 500
    panel_size: int = 50
    max_message_bytes: int = 64 * 1024
    encoding: str = "json"  # of the messages: json or msgpack
    seed: int = 42
    topic: str = "flurs-events"
    top_n: int = TOP_N  # a hit is a true item ranked in the first top_n


@dataclass
class Timings:
    """Wall time spent learning and evaluating the timed sample of events (seconds).

    One positive event in TIMED_EVERY is learned in a timed step, and one
    evaluated event in TIMED_EVERY ranked in one (with a small
    ``eval_fraction``, few events that are learned timed are evaluated), so
    ``update_s / updates`` and ``evaluate_s / evaluations`` are the mean
    times per event.
    """

    update_s: float = 0.0
    updates: int = 0
    evaluate_s: float = 0.0
    evaluations: int = 0


class StreamProcessor(CheckpointCapture, PartitionShare):
    """Turns messages into model updates, prequential metrics and checkpoints."""

    def __init__(
        self,
        config: ProcessorConfig,
        features: FeatureTable | None = None,
        draws: Draws | None = None,
    ):
        self.config = config
        self.features = features
        self.history = UserHistory(config.history_limit)
        self.recommender = self._new_recommender(config.model, config.model_params)
        self.popularity = PopularityCounts()  # positive events per item: the baseline
        self.totals = Totals()
        self.rejected_by_reason: dict[str, int] = {}  # storage.reason_kind -> count, since start
        self.offsets: dict[int, int] = {}
        self._init_partitions()
        # Tie-breaks; processors given one ``draws`` break ties from one stream.
        self._rng = Draws(config.seed + 1) if draws is None else draws
        self.timings = Timings()
        self._reset_interval(time.time())
        # The settings read per message, as plain attributes.
        self._max_message_bytes = config.max_message_bytes
        self._encoding = config.encoding
        self._min_rating = config.min_rating
        self._eval_fraction = config.eval_fraction
        self._top_n = config.top_n
        self._until_timed = 1  # the first positive event is timed
        self._until_timed_evaluation = 1  # and the first evaluated one
        self._users_at_checkpoint = 0
        self._items_at_checkpoint = 0
        self._previous_items: np.ndarray | None = None
        self._previous_panel: dict[int, frozenset[int]] = {}
        self.percentile_sum = 0.0  # of evaluated events, for MPR
        self._listeners: list[Callable[[Interaction, bool], None]] = []
        self._rejection_listeners: list[Callable[[bytes | None, str, int, int], None]] = []
        # Positive events registered, not learned yet: (user, item, items
        # registered by then, evaluate, time, sequence number); see _queue().
        self._queued: list[tuple[int, int, int, bool, float, int]] = []
        self._one_event = tuple(np.zeros(1, dtype) for dtype in _RUN_DTYPES)

    def add_listener(self, listener: Callable[[Interaction, bool], None]) -> None:
        """Call ``listener(event, positive)`` for every accepted event, after it is learned.

        The online loop uses it to see clicks and to follow event time; a
        listener must be quick, it runs once per event.
        """
        self._listeners.append(listener)

    # -- per message -------------------------------------------------------

    def process(self, raw: bytes | None, partition: int = 0, offset: int = -1) -> None:
        """Handle one message from the topic; never raises for bad input."""
        self.process_run(((raw, partition, offset),))

    def process_run(self, messages: Iterable[tuple[bytes | None, int, int]]) -> None:
        """Handle (message, partition, offset) triples in order; never raises for bad input.

        The same as process() on each, in fewer steps: the positive events
        are learned in one compiled call where the model has one
        (HybridRecommender.observe_run), and listeners hear of the run's
        events after all of them are learned.
        """
        totals = self.totals
        offsets = self.offsets
        max_bytes, encoding, min_rating = self._max_message_bytes, self._encoding, self._min_rating
        queue = self._queue
        accepted = []
        current, counts, replay_below = None, None, 0
        for raw, partition, offset in messages:
            if partition != current:
                # The queue holds one partition's events (their counts and increments are its).
                current, counts, replay_below = partition, *self._enter_partition(partition)
            totals.received += 1
            counts.received += 1
            offsets[partition] = offset + 1
            try:
                event = parse_event(raw, max_bytes, encoding)
            except InvalidEvent as exc:
                self._reject(str(exc), raw, partition, offset)
                continue
            totals.accepted += 1
            counts.accepted += 1
            positive = event.rating >= min_rating
            if positive:
                if offset < replay_below:
                    self._learn_user_side(event)
                else:
                    queue(event, None, offset)
            accepted.append((event, positive))
        self._leave_partition()
        for listener in self._listeners:
            for event, positive in accepted:
                listener(event, positive)

    def observe_positive(self, event: Interaction) -> None:
        """observe() a positive event, evaluating an ``eval_fraction`` share of them (sampled())."""
        self.observe_all((event,), None)

    def observe_all(self, events: Iterable[Interaction], evaluate: bool | None = True) -> None:
        """observe() each positive event in order, in compiled runs; None: sample as the stream."""
        queue = self._queue
        for event in events:
            queue(event, evaluate)
        self._learn_queued()

    @property
    def received_since_checkpoint(self) -> int:
        """Messages received since the last checkpoint() (its interval's count so far)."""
        return self.totals.received - self._totals_at_interval.received

    @property
    def changed_users(self) -> int:
        """Users whose state changed since the last checkpoint."""
        return self.history.changed_users

    def observe(self, event: Interaction, evaluate: bool = True) -> None:
        """Test-then-learn one positive event: rank it (if ``evaluate``), then learn it."""
        self.observe_all((event,), evaluate)

    def _queue(self, event: Interaction, evaluate: bool | None, offset: int = -1) -> None:
        """Register a positive event's ids and queue it for _learn_queued(), in order.

        ``evaluate`` None: an ``eval_fraction`` share of events, chosen by
        their sequence number (engine.evaluation.prequential.sampled), so the choice is
        the same however the stream is cut into runs and checkpoints.
        """
        totals = self.totals
        totals.positive += 1
        self._counts.positive += 1
        seq = totals.positive
        rec = self.recommender
        user = rec.register_user(event.user)
        item = rec.register_item(event.item)
        n_items = len(rec.item_ids)
        self._register_counts()
        if evaluate is None:
            fraction = self._eval_fraction
            evaluate = fraction >= 1.0 or sampled(self.config.seed, seq, fraction)
        self._until_timed -= 1
        timed = not self._until_timed
        if evaluate:
            self._until_timed_evaluation -= 1
            timed = timed or not self._until_timed_evaluation
        if rec.observe_run is None or timed:
            # Models without compiled runs, and every TIMED_EVERY-th event
            # (or evaluated event) of those with them, rank and learn in two
            # steps, timed.
            if not self._until_timed:
                self._until_timed = TIMED_EVERY
            if not self._until_timed_evaluation:
                self._until_timed_evaluation = TIMED_EVERY
            self._learn_queued()
            self._observe_timed(user, item, evaluate, event.timestamp, seq, offset)
        else:
            queued = self._queued
            queued.append((user, item, n_items, evaluate, event.timestamp, seq))
            self._queued_offsets.append(offset)
            if len(queued) >= MAX_QUEUED:
                self._learn_queued()

    def _learn_queued(self) -> None:
        """Learn the queued positive events in one compiled call, then score the evaluated ones."""
        queued = self._queued
        if not queued:
            return
        self._queued = []
        offsets, self._queued_offsets = self._queued_offsets, []
        columns = list(zip(*queued, strict=True))
        arrays = [
            np.array(column, dtype) for column, dtype in zip(columns, _RUN_DTYPES, strict=True)
        ]
        shared = self._shared_rows(len(queued))
        results = self.recommender.observe_run(*arrays, self.history, self.popularity, shared)
        self._learned(arrays[0], arrays[1], offsets, shared)
        evaluate = columns[3]
        if True in evaluate:
            count = self._count_ranks
            for row, evaluated in zip(results.tolist(), evaluate, strict=True):
                if evaluated:
                    count(*row)

    def _observe_timed(
        self, user: int, item: int, evaluate: bool, time_: float, seq: int, offset: int = -1
    ) -> None:
        timings = self.timings
        if evaluate:
            started = time.perf_counter()
            known = self.history.items(user)
            greater, ties, candidates = self.recommender.rank_counts(user, item, known)
            # The baseline's rank needs no pass over the catalogue (engine.models.baseline).
            popular_greater, popular_ties = self.popularity.rank_counts(item, known)
            elapsed = time.perf_counter() - started
            timings.evaluate_s += elapsed
            timings.evaluations += 1
            self._count_ranks(greater, ties, candidates, popular_greater, popular_ties)
        rec = self.recommender
        shared = self._shared_rows(1)
        if rec.observe_run is not None:
            # A run of one event, in arrays kept for it: what is timed is then
            # the compiled call (which also counts the event for the baseline
            # and the history), not building its arguments.
            one = self._one_event
            for array, value in zip(one, (user, item, rec.n_items, False, time_, seq), strict=True):
                array[0] = value
            started = time.perf_counter()
            rec.observe_run(*one, self.history, self.popularity, shared)
        else:
            started = time.perf_counter()
            rec.learn_one(user, item)
            self.popularity.add(item)
            self.history.add(user, item, time_, seq)
        timings.update_s += time.perf_counter() - started
        timings.updates += 1
        self._learned(np.array([user]), np.array([item]), [offset], shared)

    def learn_again(self, event: Interaction) -> None:
        """Learn an already observed positive event once more (an extra training epoch).

        Only the model learns: counts, histories and totals stay as they are.
        """
        rec = self.recommender
        rec.learn_again(rec.register_user(event.user), rec.register_item(event.item))

    def _count_ranks(
        self, greater: int, ties: int, candidates: int, popular_greater: int, popular_ties: int
    ) -> None:
        """Break the ties of the model's and the baseline's counts and score both ranks."""
        rank = break_ties(greater, ties, self._rng)
        popular_rank = break_ties(popular_greater, popular_ties, self._rng)
        totals, counts = self.totals, self._counts
        totals.evaluated += 1
        counts.evaluated += 1
        self.percentile_sum += percentile_rank(rank, candidates)
        if rank < self._top_n:
            totals.model_hits += 1
            counts.model_hits += 1
        if popular_rank < self._top_n:
            totals.popular_hits += 1
            counts.popular_hits += 1

    def add_rejection_listener(
        self, listener: Callable[[bytes | None, str, int, int], None]
    ) -> None:
        """Call ``listener(raw, reason, partition, offset)`` for every rejected message.

        The dead-letter topic (engine.worker.dead_letters) uses it; a listener must
        be quick and must not raise.
        """
        self._rejection_listeners.append(listener)

    def _reject(self, reason: str, raw: bytes | None, partition: int, offset: int) -> None:
        self.totals.rejected += 1
        self._counts.rejected += 1
        kind = reason_kind(reason)
        self.rejected_by_reason[kind] = self.rejected_by_reason.get(kind, 0) + 1
        for listener in self._rejection_listeners:
            listener(raw, reason, partition, offset)
        log.debug("rejected message at %s:%s: %s", partition, offset, reason)
        if len(self._rejected) < MAX_REJECTED_PER_INTERVAL:
            self._rejected.append(
                RejectedEvent(
                    time=time.time(),
                    reason=reason,
                    partition=partition,
                    offset=offset,
                    payload=preview(raw),
                )
            )

    def _new_recommender(self, model: str, params: dict | None) -> Recommender:
        return Recommender(
            model,
            params,
            seed=self.config.seed,
            known_items=self.history.items,
            features=self.features,
            history_limit=self.config.history_limit,
        )
