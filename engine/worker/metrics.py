"""GET /metrics: the worker's figures in the Prometheus text format.

Read from the engine's own counters when Prometheus scrapes, not counted
again per message: the hot path pays nothing for them (Faust's Prometheus
sensor would update several metrics per message). Counters restored from a
checkpoint continue from it, so ``reco_messages_received_total`` equals what
`python -m engine status` reports as ``received`` after the same checkpoint.
Only the two histograms are observed as things happen: one observation per
checkpoint and per API request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from engine.worker.runtime import EngineRuntime

# Seconds. A checkpoint takes tens of milliseconds (seconds at a million users).
CHECKPOINT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Seconds. A request holds the event loop for about half a millisecond.
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class WorkerMetrics:
    """The registry /metrics serves: the engine's figures, two histograms, the process's own."""

    def __init__(
        self,
        runtime: Callable[[], EngineRuntime | None],
        partitions: Callable[[], list[int]],
        lag: Callable[[], dict[int, int]],
        api: Callable[[], dict[str, int]],
    ):
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.checkpoint_seconds = Histogram(
            "reco_checkpoint_duration_seconds",
            "Time to take and write one checkpoint (failed attempts included).",
            buckets=CHECKPOINT_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "reco_api_request_duration_seconds",
            "Time the live API's handlers took per request, on the event loop.",
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_EngineCollector(runtime, partitions, lag, api))

    def observe_checkpoint(self, seconds: float, written: bool) -> None:
        """A runtime checkpoint listener (EngineRuntime.checkpoint_listeners)."""
        self.checkpoint_seconds.observe(seconds)


class _EngineCollector:
    """Builds the engine's metrics from its live state at every scrape."""

    def __init__(self, runtime, partitions, lag, api):
        self._runtime, self._partitions, self._lag, self._api = runtime, partitions, lag, api

    def describe(self) -> list[Metric]:
        return []  # built at scrape time: nothing to check for clashes in advance

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime()
        partitions = self._partitions()
        yield _gauge(
            "reco_partitions_assigned",
            "Partitions of the events topic this worker owns now.",
            len(partitions),
            partitions=",".join(map(str, partitions)),
        )
        owned = GaugeMetricFamily(
            "reco_partition_owned",
            "1 for each partition of the events topic this worker owns.",
            labels=["partition"],
        )
        for partition in partitions:
            owned.add_metric([str(partition)], 1)
        yield owned
        api = self._api()
        yield _counter("reco_api_requests", "Requests the live API handled.", api["handled"])
        yield _counter(
            "reco_api_refusals",
            "Requests refused (503) because the API was over its share of the loop.",
            api["refused"],
        )
        if runtime is None:
            return  # starting: only what exists before the engine does
        yield from self._messages(runtime)
        yield from self._model(runtime)
        yield from self._checkpoints(runtime)
        yield from self._online(runtime)
        lag = GaugeMetricFamily(
            "reco_consumer_lag_messages",
            "Messages between the processed offset and the end of each owned partition.",
            labels=["partition"],
        )
        for partition, behind in sorted(self._lag().items()):
            lag.add_metric([str(partition)], behind)
        yield lag
        yield _gauge(
            "reco_broker_reachable",
            "1 while the broker accepts connections, 0 while it does not.",
            0 if runtime.broker.stalled_since is not None else 1,
        )

    def _messages(self, runtime: EngineRuntime) -> Iterator[Metric]:
        processor = runtime.processor
        totals = processor.totals
        yield _counter("reco_messages_received", "Messages consumed.", totals.received)
        yield _counter(
            "reco_messages_accepted", "Messages that were valid events.", totals.accepted
        )
        yield _counter(
            "reco_messages_positive",
            "Valid events rated at least RECO_MIN_RATING (positive feedback).",
            totals.positive,
        )
        rejected = CounterMetricFamily(
            "reco_messages_rejected",
            "Messages rejected, by kind of reason.",
            labels=["reason"],
        )
        for reason, count in sorted(processor.rejected_by_reason.items()):
            rejected.add_metric([reason], count)
        yield rejected
        yield _counter(
            "reco_events_evaluated", "Positive events ranked before learning.", totals.evaluated
        )
        if runtime.dead_letters is not None:
            dead = CounterMetricFamily(
                "reco_dead_letters",
                "Rejected messages written to the dead-letter topic (sent), or not (dropped).",
                labels=["outcome"],
            )
            dead.add_metric(["sent"], runtime.dead_letters.sent)
            dead.add_metric(["dropped"], runtime.dead_letters.dropped)
            yield dead
        interval = runtime.last_interval
        if interval is not None and interval.interval_s > 0:
            yield _gauge(
                "reco_events_per_second",
                "Messages per second over the last checkpoint interval.",
                interval.received / interval.interval_s,
            )

    def _model(self, runtime: EngineRuntime) -> Iterator[Metric]:
        processor = runtime.processor
        yield _gauge("reco_users", "Users the model knows.", processor.recommender.n_users)
        yield _gauge("reco_items", "Items the model knows.", processor.recommender.n_items)
        recall = GaugeMetricFamily(
            "reco_recall_at_10",
            "Prequential recall@10 of the model and of the popularity baseline, "
            "since the store was created (cumulative) and over the last checkpoint interval.",
            labels=["variant", "window"],
        )
        totals, interval = processor.totals, runtime.last_interval
        hits = CounterMetricFamily(
            "reco_recall_hits",
            "Evaluated positive events whose item was in the top 10, of the model and of the "
            "popularity baseline: over reco_events_evaluated_total, recall@10 over any window.",
            labels=["variant"],
        )
        hits.add_metric(["model"], totals.model_hits)
        hits.add_metric(["baseline"], totals.popular_hits)
        yield hits
        windows = [("cumulative", totals)] + ([("interval", interval)] if interval else [])
        for window, counts in windows:
            if counts.evaluated:
                recall.add_metric(["model", window], counts.model_hits / counts.evaluated)
                recall.add_metric(["baseline", window], counts.popular_hits / counts.evaluated)
        yield recall

    def _checkpoints(self, runtime: EngineRuntime) -> Iterator[Metric]:
        yield _counter(
            "reco_checkpoints", "Checkpoints written by this process.", runtime.checkpoints_written
        )
        yield _counter(
            "reco_checkpoint_failures",
            "Checkpoint writes that failed (each is retried with the next).",
            runtime.checkpoint_failures,
        )
        if runtime.last_checkpoint_time is not None:
            yield _gauge(
                "reco_seconds_since_last_checkpoint",
                "Seconds since the last checkpoint in the store was written.",
                max(time.time() - runtime.last_checkpoint_time, 0.0),
            )

    def _online(self, runtime: EngineRuntime) -> Iterator[Metric]:
        by_variant = runtime.live.clicks.by_variant
        impressions = CounterMetricFamily(
            "reco_impressions",
            "Recommendation lists the live API served, by A/B variant.",
            labels=["variant"],
        )
        clicks = CounterMetricFamily(
            "reco_clicks",
            "Served lists a later positive event of the same user took an item from.",
            labels=["variant"],
        )
        ctr = GaugeMetricFamily(
            "reco_ctr",
            "Clicks per impression since this process started, by A/B variant.",
            labels=["variant"],
        )
        for variant, (shown, clicked) in sorted(by_variant.items()):
            impressions.add_metric([variant], shown)
            clicks.add_metric([variant], clicked)
            if shown:
                ctr.add_metric([variant], clicked / shown)
        yield impressions
        yield clicks
        yield ctr


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    """A counter; prometheus_client adds the ``_total`` suffix to ``name``."""
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float, **labels: str) -> GaugeMetricFamily:
    if not labels:
        return GaugeMetricFamily(name, documentation, value=value)
    gauge = GaugeMetricFamily(name, documentation, labels=list(labels))
    gauge.add_metric(list(labels.values()), value)
    return gauge
