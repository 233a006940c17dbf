"""Polls of a run's workers, and the rates and CPU shares they give (engine.bench.scale)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """One poll of every worker: when (perf_counter seconds), and what each said."""

    time: float
    events: tuple[int, ...]
    partitions: tuple[tuple[int, ...], ...]
    # CPU seconds used so far by each worker, then the broker, then the whole machine
    cpu_s: tuple[float | None, ...]


@dataclass(frozen=True)
class Span:
    """Events counted over seconds: from poll ``first`` to poll ``last`` (indices)."""

    events: int
    seconds: float
    first: int = 0
    last: int = 0

    @property
    def events_per_s(self) -> float | None:
        return self.events / self.seconds if self.seconds > 0 else None


def timed_span(samples: list[Sample], total: int, worker: int | None = None) -> Span:
    """The events after the first poll that saw any, over the time to the first poll at ``total``.

    ``worker``: that worker's events only; None: all workers'. When the first
    poll with events already saw all of them (a run shorter than a poll),
    the span starts at the poll before it and counts them all.

    >>> s = [Sample(t, (e,), ((0,),), (None, None)) for t, e in [(0, 0), (1, 10), (2, 30), (3, 30)]]
    >>> timed_span(s, 30)
    Span(events=20, seconds=1, first=1, last=2)
    >>> timed_span(s[:1] + s[2:], 30)
    Span(events=30, seconds=2, first=0, last=1)
    """

    def count(sample: Sample) -> int:
        return sum(sample.events) if worker is None else sample.events[worker]

    first = next((i for i, s in enumerate(samples) if count(s) > 0), None)
    last = next((i for i, s in enumerate(samples) if count(s) >= total), None)
    if first is None or last is None:
        return Span(0, 0.0)
    if first == last:
        start = max(first - 1, 0)
        return Span(count(samples[last]), samples[last].time - samples[start].time, start, last)
    return Span(
        count(samples[last]) - count(samples[first]),
        samples[last].time - samples[first].time,
        first,
        last,
    )


def reassigned(samples: list[Sample]) -> bool:
    """Whether any worker's partitions changed after the first poll that saw an event.

    A worker may report its first assignment a poll after another worker's
    first event: no partitions before it is not a change.

    >>> s = [Sample(0, (0, 0), ((0, 2), ()), ()), Sample(1, (5, 0), ((0, 2), (1, 3)), ())]
    >>> reassigned(s), reassigned([*s, Sample(2, (9, 0), ((0, 1, 2, 3), ()), ())])
    (False, True)
    """
    first = next((i for i, s in enumerate(samples) if sum(s.events) > 0), len(samples))
    seen = [
        {s.partitions[w] for s in samples[first:] if s.partitions[w]}
        for w in range(len(samples[0].events))
    ]
    return any(len(assignments) > 1 for assignments in seen)


def machine_cpu_seconds() -> float | None:
    """CPU seconds all cores have spent busy since boot; None where /proc cannot say."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user, nice, system, idle, iowait, irq, softirq, steal: all but idle and iowait
    busy = sum(fields[:3]) + sum(fields[5:8])
    return busy / os.sysconf("SC_CLK_TCK")


def other_cpu(first: Sample, last: Sample) -> float | None:
    """CPU seconds per wall second the machine spent on anything but the workers and broker."""
    shares = [cpu_share(first, last, i) for i in range(len(first.cpu_s))]
    if any(share is None for share in shares):
        return None
    return round(shares[-1] - sum(shares[:-1]), 2)


def cpu_share(first: Sample, last: Sample, index: int) -> float | None:
    """CPU seconds per wall second of ``cpu_s[index]`` from one poll to another."""
    start, end = first.cpu_s[index], last.cpu_s[index]
    seconds = last.time - first.time
    if start is None or end is None or seconds <= 0:
        return None
    return round((end - start) / seconds, 2)
