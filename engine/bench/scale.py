"""`python -m engine bench pipeline --workers N`: N workers in one consumer group against one.

Fills one topic of max(4, N) partitions with a replay (the source's events
repeated, each copy later in time than the one before; keyed by user, so
the users spread over the partitions), then consumes all of it ``runs``
times with one worker and with N, in turn, each time under a fresh consumer
group and with fresh stores. Every worker is a real ``python -m engine
worker`` process (default model, every event evaluated, checkpoints every
5 s) with its own store, Faust folder and web port, as a user starts them.

How many copies: a first one-worker run over one copy (which also warms the
machine up) measures the events it handles per CPU second; the topic then
gets enough copies for N workers, each on a core of its own at that cost
and 20% faster still, to take MIN_RUN_S seconds. Other work on the machine
only makes runs longer; the summary's ``shortest_s`` says how long the
shortest run was. The one-worker runs last about N times longer.

How a run is timed: the bench asks every worker's GET /health ("events": the
messages it processed) every POLL_S seconds. The run's rate counts the events
after the first poll that saw any, up to the first poll that saw them all,
over the time between those two polls; the end is late by less than one poll
(0.1 s of at least 20 s: under 0.5%). A worker's rate likewise, from
its first poll with events to its first poll at its final count. The workers
then stop (SIGTERM: each writes a last checkpoint) and their stores must hold,
summed, every event sent. A run in which any worker's partitions changed after
the first event (a worker joined the group late) is discarded and run again:
moving partitions mid-run would time the rebalance, and count moved events twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.bench.samples import (
    Sample,
    cpu_share,
    machine_cpu_seconds,
    other_cpu,
    reassigned,
    timed_span,
)
from engine.bench.serve import cpu_seconds, get_json, replay
from engine.sources.broker import HOST, EmbeddedBroker, free_port
from engine.sources.encoding import transcode
from engine.sources.producer import send_messages, synthetic_messages
from engine.sources.synthetic import SyntheticConfig
from storage import NoCheckpoint, StoreReader

TOPIC = "bench-scale-events"
MIN_PARTITIONS = 4
MIN_RUN_S = 20.0  # the shortest run, seconds
COPIES_MARGIN = 1.2  # per CPU second, N workers ran up to 1.25x faster than one worker
POLL_S = 0.1  # seconds between two polls of every worker's /health
STARTUP_TIMEOUT_S = 180.0  # from the workers' start to their first event
STALL_TIMEOUT_S = 60.0  # with no event processed by any worker
STOP_TIMEOUT_S = 60.0  # for a worker's last checkpoint after SIGTERM
ATTEMPTS = 3  # of a run whose group rebalanced mid-run


@dataclass(frozen=True)
class WorkerFigures:
    """One worker in one run: events from its store, its rate, partitions and CPU share."""

    events: int
    events_per_s: float | None
    partitions: list[int]
    cpu: float | None  # CPU seconds per wall second, from its first event to its last


@dataclass(frozen=True)
class GroupRun:
    """One run of ``workers`` workers over the whole topic."""

    workers: int
    events: int
    seconds: float
    events_per_s: float
    per_worker: list[WorkerFigures]
    broker_cpu: float | None  # the broker's CPU seconds per wall second, same span
    other_cpu: float | None  # the rest of the machine's, the bench's own polling included
    events_per_cpu_s: float | None  # events per CPU second of the workers: the cost of one
    load_average: float  # 1-minute, at the run's start
    model: str | None


@dataclass
class Bench:
    """What every run shares: the broker, the environment and where files go."""

    broker: EmbeddedBroker
    env: dict[str, str]
    tmp: Path
    partitions: int
    runs: int = 0  # group runs started, for distinct folders

    def run_group(self, workers: int, total: int) -> tuple[GroupRun, int]:
        """``workers`` workers under a fresh group until their stores hold ``total``; and retries."""
        for attempt in range(ATTEMPTS):
            figures = self._run_once(workers, total)
            if figures is not None:
                return figures, attempt
        raise RuntimeError(
            f"{workers} workers' partitions moved mid-run {ATTEMPTS} times in a row: "
            "the workers did not join the group together (is the machine overloaded?)"
        )

    def _run_once(self, workers: int, total: int) -> GroupRun | None:
        self.runs += 1
        group = f"bench-scale-{workers}-{uuid.uuid4().hex[:8]}"
        folders = [self.tmp / f"run-{self.runs}" / f"worker-{i}" for i in range(workers)]
        load_average = os.getloadavg()[0]
        with worker_processes(folders, {**self.env, "RECO_GROUP": group}) as started:
            samples = _watch(started, total, self.broker.process.pid)
        stored = [_stored_events(folder / "reco.db") for folder in folders]
        if reassigned(samples):
            return None
        if sum(stored) != total:
            raise RuntimeError(
                f"the workers' stores hold {stored} events, {sum(stored)} in all; {total} were sent"
            )
        span = timed_span(samples, total)
        first, last = samples[span.first], samples[span.last]
        per_worker = []
        for i, events in enumerate(stored):
            own = timed_span(samples, events, worker=i)
            per_worker.append(
                WorkerFigures(
                    events=events,
                    events_per_s=_round(own.events_per_s),
                    partitions=list(samples[-1].partitions[i]),
                    cpu=cpu_share(samples[own.first], samples[own.last], i),
                )
            )
        worker_cpu = [cpu_share(first, last, i) for i in range(workers)]
        return GroupRun(
            workers=workers,
            events=total,
            seconds=round(span.seconds, 3),
            events_per_s=round(span.events_per_s or 0.0),
            per_worker=per_worker,
            broker_cpu=cpu_share(first, last, -2),
            other_cpu=other_cpu(first, last),
            events_per_cpu_s=(
                None
                if None in worker_cpu or not sum(worker_cpu)
                else round((span.events_per_s or 0.0) / sum(worker_cpu))
            ),
            load_average=round(load_average, 2),
            model=started[0].model,
        )


@dataclass
class WorkerProcess:
    """A started `python -m engine worker`: its process, API port, log file and model."""

    process: subprocess.Popen
    port: int
    log: Path
    model: str | None = None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@contextlib.contextmanager
def worker_processes(folders: list[Path], env: dict[str, str]) -> Iterator[list[WorkerProcess]]:
    """Start a `python -m engine worker` per folder (its store and Faust folder there) and
    stop them all on the way out, however it is left."""
    started: list[WorkerProcess] = []
    try:
        for folder in folders:
            folder.mkdir(parents=True)
            port = free_port()
            log = folder / "worker.log"
            with open(log, "w") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "engine", "worker", "--db", str(folder / "reco.db"),
                     "--web-port", str(port)],
                    env={**env, "RECO_DATADIR": str(folder / "faust")},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            started.append(WorkerProcess(process, port, log))
        yield started
    finally:
        _stop([w.process for w in started])


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM every process (each writes its last checkpoint), then wait; SIGKILL the late."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in processes:
        try:
            process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _watch(workers: list[WorkerProcess], total: int, broker_pid: int) -> list[Sample]:
    """Poll every worker's /health until together they processed ``total`` events."""
    samples: list[Sample] = []
    started = time.monotonic()
    progressed, done = started, 0
    while done < total:
        for i, worker in enumerate(workers):
            if worker.process.poll() is not None:
                raise RuntimeError(
                    f"worker {i} exited with code {worker.process.returncode}:\n{worker.tail()}"
                )
        states = [get_json(f"http://{HOST}:{w.port}/health", timeout=2.0) or {} for w in workers]
        now = time.perf_counter()
        pids = [*(w.process.pid for w in workers), broker_pid]
        cpu = (*(cpu_seconds(p) for p in pids), machine_cpu_seconds())
        samples.append(
            Sample(
                time=now,
                events=tuple(s.get("events", 0) for s in states),
                partitions=tuple(tuple(s.get("partitions", ())) for s in states),
                cpu_s=cpu,
            )
        )
        for worker, state in zip(workers, states, strict=True):
            worker.model = worker.model or state.get("model")
        if sum(samples[-1].events) > done:
            progressed, done = time.monotonic(), sum(samples[-1].events)
        waited = time.monotonic() - progressed
        if (not done and waited > STARTUP_TIMEOUT_S) or (done and waited > STALL_TIMEOUT_S):
            raise RuntimeError(
                f"{done} of {total} events processed, none in the last {waited:.0f} s; "
                f"worker 0's log ends:\n{workers[0].tail()}"
            )
        time.sleep(POLL_S)
    return samples


def _stored_events(db: Path) -> int:
    """Events the worker's last checkpoint counts as received (0 before its first)."""
    try:
        return StoreReader(db).latest_checkpoint().totals.received
    except NoCheckpoint:
        return 0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value)


def messages_for(source: str, events: int | None, copies: int, encoding: str) -> list[bytes]:
    """The replay: ``copies`` copies of the source's first ``events`` events, each copy later.

    A MovieLens file is repeated with its timestamps shifted; the synthetic
    stream simply runs on for as many events.
    """
    if source == "synthetic":
        per_copy = events or 100_000
        messages = list(synthetic_messages(SyntheticConfig(), per_copy * copies))
    else:
        messages = replay(Path(source), copies, events)
    return list(transcode(messages, encoding))


def run(
    source: str,
    workers: int,
    runs: int,
    events: int | None = None,
    encoding: str = "json",
    eval_fraction: float = 1.0,
    checkpoint_interval: float = 5.0,
    quick: bool = False,
) -> dict:
    """One worker and ``workers`` workers, ``runs`` times each, in turn; returns the figures.

    ``quick``: one copy, one run each, no calibration: seconds, and the
    figures mean nothing. Prints a JSON line per run as it ends.
    """
    partitions = max(MIN_PARTITIONS, workers)
    load_start = os.getloadavg()[0]
    one_copy = messages_for(source, events, 1, encoding)
    with (
        _exit_on_sigterm(),
        _tempdir() as tmp,
        EmbeddedBroker() as broker,
    ):
        env = {
            **os.environ,
            "RECO_BROKER": broker.url,
            "RECO_TOPIC": TOPIC,
            "RECO_PARTITIONS": str(partitions),
            "RECO_WEB_HOST": HOST,
            "RECO_LOG_LEVEL": "warning",
            "RECO_CHECKPOINT_INTERVAL": str(checkpoint_interval),
            "RECO_EVAL_FRACTION": str(eval_fraction),
            "RECO_ENCODING": encoding,
        }
        bench = Bench(broker, env, tmp, partitions)
        _send(one_copy, broker, partitions)
        calibration, copies, retries = None, 1, 0
        if not quick:
            calibration, retries = bench.run_group(1, len(one_copy))
            _print_run("calibration", calibration)
            # At most N workers on a core each, at one worker's cost per event.
            rate = calibration.events_per_cpu_s or calibration.events_per_s
            copies = max(1, math.ceil(MIN_RUN_S * workers * rate * COPIES_MARGIN / len(one_copy)))
            if copies > 1:
                _send(
                    messages_for(source, events, copies, encoding)[len(one_copy) :],
                    broker,
                    partitions,
                )
        total = len(one_copy) * copies
        results: dict[int, list[GroupRun]] = {1: [], workers: []}
        for attempt in range(runs):
            for n in (1, workers):
                figures, retried = bench.run_group(n, total)
                retries += retried
                results[n].append(figures)
                _print_run(attempt, figures)
    return _summary(
        results, workers, partitions, source, total, copies, runs, encoding, eval_fraction,
        calibration, retries, load_start,
    )  # fmt: skip


def _summary(
    results: dict[int, list[GroupRun]],
    workers: int,
    partitions: int,
    source: str,
    total: int,
    copies: int,
    runs: int,
    encoding: str,
    eval_fraction: float,
    calibration: GroupRun | None,
    retries: int,
    load_start: float,
) -> dict:
    rates = {n: [r.events_per_s for r in group] for n, group in results.items()}
    median = {n: statistics.median(values) for n, values in rates.items()}
    pairs = zip(results[1], results[workers], strict=True)
    return {
        "benchmark": "pipeline",
        "source": source,
        "workers": workers,
        "partitions": partitions,
        "events": total,
        "copies": copies,
        "runs": runs,
        "encoding": encoding,
        "eval_fraction": eval_fraction,
        "model": results[1][0].model,
        "events_per_s_1": round(median[1]),
        f"events_per_s_{workers}": round(median[workers]),
        "speedup": round(median[workers] / median[1], 3) if median[1] else None,
        "events_per_s_min_max": {str(n): [min(v), max(v)] for n, v in rates.items()},
        "all_events_per_s": {str(n): v for n, v in rates.items()},
        "speedups": [round(b.events_per_s / a.events_per_s, 3) for a, b in pairs if a.events_per_s],
        "per_worker_events_per_s": {
            str(n): [[w.events_per_s for w in r.per_worker] for r in group]
            for n, group in results.items()
        },
        "per_worker_events": {
            str(n): [[w.events for w in r.per_worker] for r in group]
            for n, group in results.items()
        },
        "seconds": {str(n): [r.seconds for r in group] for n, group in results.items()},
        "workers_cpu": {str(n): _median_cpu(group) for n, group in results.items()},
        "broker_cpu": {
            str(n): _median([r.broker_cpu for r in group]) for n, group in results.items()
        },
        "other_cpu": {
            str(n): _median([r.other_cpu for r in group]) for n, group in results.items()
        },
        "events_per_worker_cpu_s": {
            str(n): _median([r.events_per_cpu_s for r in group]) for n, group in results.items()
        },
        "shortest_s": min(r.seconds for group in results.values() for r in group),
        "calibration_events_per_s": calibration.events_per_s if calibration else None,
        "retries": retries,
        "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "cores": os.cpu_count(),
    }


def _median_cpu(group: list[GroupRun]) -> float | None:
    """The median over runs of the workers' summed CPU seconds per wall second."""
    sums = [
        None if any(w.cpu is None for w in r.per_worker) else sum(w.cpu for w in r.per_worker)
        for r in group
    ]
    return _median(sums)


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 2) if known else None


def _print_run(run: int | str, figures: GroupRun) -> None:
    print(json.dumps({"run": run, **asdict(figures)}), flush=True)


def _send(messages: list[bytes], broker: EmbeddedBroker, partitions: int) -> None:
    asyncio.run(
        send_messages(
            messages, broker=broker.url, topic=TOPIC, partitions=partitions, show_progress=False
        )
    )


@contextlib.contextmanager
def _tempdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="reco-scale-") as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def _exit_on_sigterm() -> Iterator[None]:
    """SIGTERM raises SystemExit while the bench runs, so its workers and broker are stopped."""

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
