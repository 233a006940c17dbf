"""`python -m engine bench serve`: API latency under load, and what the load costs the stream.

Starts the embedded broker on a free port and fills a topic with a MovieLens
replay (the file repeated, timestamps shifted, so the worker has a backlog
for the whole run: MovieLens 100k scale, 943 users and 1,682 items). Then it
runs a real worker (`python -m engine worker`, default model, every event
evaluated) serving its API on a free port of 127.0.0.1 and, while the worker
works through the backlog, sends GET /recommend requests (nine in ten for
MovieLens users, one in ten for unknown ones) from keep-alive clients:

1. at each concurrency level below ``--max-concurrency`` (1, 10, 25, 50), for
   ``--seconds``: that many clients, each pausing ``--think-ms`` on average
   (exponentially distributed) between an answer and its next request;
2. at ``--max-concurrency`` (100) three times, each spell after a quiet one of
   the same length, and a last quiet spell: the event rate with load is
   compared with the rate in the quiet spells around it, so the machine's
   other work, which drifts, weighs on both alike;
3. once more at ``--max-concurrency`` with no pause at all (a flood): what
   the API's share of the loop (RECO_API_MAX_SHARE) protects.

Each spell is bounded in time and to 50,000 requests. Event rates come from
the worker's own count (GET /health). Every level is printed as a JSON
line; the last line is the summary: ``concurrency``, ``p50_ms``, ``p99_ms``,
``requests_per_s`` and ``events_ratio_under_load`` at the highest level,
then the flood's figures and the worker's time per request.

The machine's other work weighs on every figure, so the summary says how
much CPU the worker got (``worker_cpu_*``: CPU seconds per wall second,
quiet and under load), how much the load generator itself took
(``generator_cpu``; it runs on uvloop to keep that small) and the load
average around the run.

``quick`` (``--quick``) replays the file's first 2,000 ratings once and
caps the levels at 4 clients and 0.5 s, one loaded spell each: a run of
seconds that checks the bench works and prints its keys. The backlog does
not outlast it, so its figures mean nothing.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import uvloop

from engine.bench.load import LevelResult, run_level
from engine.sources.broker import HOST, EmbeddedBroker, free_port
from engine.sources.movielens import read_item_names, read_ratings
from engine.sources.producer import send_messages, store_item_names

TOPIC = "bench-serve-events"
DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ml-100k" / "u.data"
COPIES = 16  # replays of the file back to back: a backlog that outlasts the run (8 ran out at 14k events/s)
WARMUP_EVENTS = 20_000  # the model has most users and items before the first phase
MAX_REQUESTS_PER_LEVEL = 50_000
STARTUP_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Workload:
    """What a run replays and how long it loads the worker: the bench's, or ``--quick``'s."""

    copies: int = COPIES
    ratings: int | None = None  # the file's first ratings only; None: all of them
    warmup_events: int = WARMUP_EVENTS
    rounds: int = 3  # loaded spells at the highest level, each between quiet ones
    max_concurrency: int | None = None  # caps on the levels; None: as asked
    seconds: float | None = None
    backlog: bool = True  # the backlog must outlast the run, or the event rates mean nothing

    def levels(self, max_concurrency: int, seconds: float) -> tuple[int, float]:
        if self.max_concurrency is not None:
            max_concurrency = min(max_concurrency, self.max_concurrency)
        if self.seconds is not None:
            seconds = min(seconds, self.seconds)
        return max_concurrency, seconds


QUICK = Workload(
    copies=1,
    ratings=2_000,
    warmup_events=2_000,
    rounds=1,
    max_concurrency=4,
    seconds=0.5,
    backlog=False,
)


def replay(path: Path, copies: int, limit: int | None = None) -> list[bytes]:
    """The first ``limit`` ratings ``copies`` times over, each copy later than the one before."""
    ratings = read_ratings(path)[:limit]
    first, last = ratings[0].timestamp, ratings[-1].timestamp
    span = last - first + 1.0
    return [
        json.dumps({**r.as_event(), "timestamp": r.timestamp + copy * span}).encode()
        for copy in range(copies)
        for r in ratings
    ]


def levels_up_to(maximum: int) -> list[int]:
    return sorted({c for c in (1, 10, 25, 50, 100) if c < maximum} | {maximum})


def run(
    data: Path,
    max_concurrency: int,
    seconds: float,
    think_s: float,
    workload: Workload = Workload(),
) -> dict:
    max_concurrency, seconds = workload.levels(max_concurrency, seconds)
    messages = replay(data, workload.copies, workload.ratings)
    total = len(messages)
    users = sorted({json.loads(m)["user"] for m in messages[: total // workload.copies]})
    # Mostly known users, and one request in ten for a user the model never saw.
    paths = [f"/recommend/{u}?n=10" for u in users] + [
        f"/recommend/new-{i}?n=10" for i in range(len(users) // 9)
    ]
    with tempfile.TemporaryDirectory(prefix="reco-serve-") as tmp, EmbeddedBroker() as broker:
        asyncio.run(
            send_messages(
                messages, broker=broker.url, topic=TOPIC, partitions=1, show_progress=False
            )
        )
        # The load generator must not pause for its own garbage collection of the
        # replay's half a million objects: that would read as server latency.
        del messages
        gc.collect()
        gc.freeze()
        db = Path(tmp) / "reco.db"
        store_item_names(db, read_item_names(data))
        port = free_port()
        env = {
            **os.environ,
            "RECO_BROKER": broker.url,
            "RECO_TOPIC": TOPIC,
            "RECO_GROUP": "bench-serve",
            "RECO_DB": str(db),
            "RECO_DATADIR": str(Path(tmp) / "faust"),
            "RECO_WEB_PORT": str(port),
            "RECO_WEB_HOST": HOST,
            "RECO_LOG_LEVEL": "warning",
            "RECO_EVAL_FRACTION": "1",
        }
        log_path = Path(tmp) / "worker.log"
        with open(log_path, "w") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "engine", "worker"], env=env, stdout=log, stderr=log
            )
            target = Target(f"http://{HOST}:{port}/health", port, paths, worker.pid)
            try:
                return _measure(
                    target, total, max_concurrency, seconds, think_s, workload, log_path
                )
            finally:
                worker.terminate()
                try:
                    worker.wait(30)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()


@dataclass(frozen=True)
class Target:
    """The worker under test: its /health URL, API port, request paths and process id."""

    health: str
    port: int
    paths: list[str]
    pid: int


def _measure(
    target: Target,
    total: int,
    max_concurrency: int,
    seconds: float,
    think_s: float,
    workload: Workload,
    log: Path,
) -> dict:
    health = target.health
    load_before = os.getloadavg()[0]
    warmup = min(workload.warmup_events, total)
    _wait_for(lambda: (get_json(health) or {}).get("events", 0) >= warmup, log)
    for concurrency in levels_up_to(max_concurrency)[:-1]:
        _print_level(_load(target, concurrency, seconds, think_s), think_s)
    # The highest level alternates with quiet spells of the same length, so the
    # event rates with and without load are measured side by side: the machine's
    # other work drifts, and it drifts alike for both.
    top = _alternate(target, max_concurrency, seconds, think_s, workload.rounds)
    _print_level(top.load, think_s)
    # And the worst case: every client sends its next request as soon as it can.
    flood = _alternate(target, max_concurrency, seconds, 0.0, rounds=1)
    _print_level(flood.load, 0.0)
    state = get_json(health) or {}
    if workload.backlog and state.get("events", 0) >= total:
        raise RuntimeError("the worker ran out of backlog during the run; raise COPIES")
    result = top.load.result
    return {
        "benchmark": "serve",
        "concurrency": result.concurrency,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "requests_per_s": result.requests_per_s,
        "events_ratio_under_load": top.ratio,
        "events_per_s_without_load": round(top.quiet_rate),
        "events_per_s_under_load": round(top.load.events_per_s),
        "think_ms": round(1000 * think_s, 1),
        "errors": result.errors,
        "flood_p50_ms": flood.load.result.p50_ms,
        "flood_p99_ms": flood.load.result.p99_ms,
        "flood_requests_per_s": flood.load.result.requests_per_s,
        "flood_refused": flood.load.result.errors,
        "flood_events_ratio": flood.ratio,
        "handler_ms_mean": state.get("handler_ms_mean"),
        "handler_cpu_ms_mean": state.get("handler_cpu_ms_mean"),
        "rank_ms_mean": state.get("rank_ms_mean"),
        "waited_for_share": state.get("waited"),
        "worker_cpu_without_load": top.quiet_cpu,
        "worker_cpu_under_load": _share(top.load.worker_cpu_s, top.load.seconds),
        "generator_cpu": _share(top.load.generator_cpu_s, top.load.seconds),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "items": state.get("items"),
        "users": state.get("users"),
        "model": state.get("model"),
        "event_loop": state.get("event_loop"),
        "cores": os.cpu_count(),
    }


@dataclass
class Loaded:
    """Spells of load: every answer's latency (seconds), the events handled meanwhile,
    and the CPU seconds the worker and the load generator used."""

    concurrency: int
    latencies_s: list[float]
    errors: int
    seconds: float
    events: int
    worker_cpu_s: float | None = 0.0
    generator_cpu_s: float = 0.0

    @property
    def result(self) -> LevelResult:
        return LevelResult.of(self.concurrency, self.latencies_s, self.errors, self.seconds)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


@dataclass
class Alternated:
    load: Loaded
    quiet_rate: float  # events/s in the quiet spells between the loaded ones
    quiet_cpu: float | None  # the worker's CPU seconds per second in them

    @property
    def ratio(self) -> float | None:
        return round(self.load.events_per_s / self.quiet_rate, 3) if self.quiet_rate else None


def _load(target: Target, concurrency: int, seconds: float, think_s: float) -> Loaded:
    start, worker_cpu = _events(target.health), cpu_seconds(target.pid)
    generator_cpu = time.process_time()
    latencies, errors, spent = uvloop.run(
        run_level(
            HOST, target.port, target.paths, concurrency, seconds, MAX_REQUESTS_PER_LEVEL, think_s
        )
    )
    generator_cpu = time.process_time() - generator_cpu
    worker_cpu = _minus(cpu_seconds(target.pid), worker_cpu)
    events = _events(target.health) - start
    return Loaded(concurrency, latencies, errors, spent, events, worker_cpu, generator_cpu)


def _alternate(
    target: Target, concurrency: int, seconds: float, think_s: float, rounds: int = 3
) -> Alternated:
    """Quiet, load, quiet, load, ... ``rounds`` times, then quiet once more."""
    quiet_events, quiet_s, quiet_cpu = 0.0, 0.0, 0.0
    merged = Loaded(concurrency, [], 0, 0.0, 0)
    for round_ in range(rounds + 1):
        cpu = cpu_seconds(target.pid)
        rate, spent = _event_rate(target.health, seconds)
        quiet_events, quiet_s = quiet_events + rate * spent, quiet_s + spent
        quiet_cpu = _add(quiet_cpu, _minus(cpu_seconds(target.pid), cpu))
        if round_ == rounds:
            break
        spell = _load(target, concurrency, seconds, think_s)
        merged = Loaded(
            concurrency,
            merged.latencies_s + spell.latencies_s,
            merged.errors + spell.errors,
            merged.seconds + spell.seconds,
            merged.events + spell.events,
            _add(merged.worker_cpu_s, spell.worker_cpu_s),
            merged.generator_cpu_s + spell.generator_cpu_s,
        )
    return Alternated(merged, quiet_events / quiet_s, _share(quiet_cpu, quiet_s))


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used; None where /proc cannot say."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # utime and stime are the 14th and 15th fields, counted from the pid.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _add(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def _share(cpu_s: float | None, seconds: float) -> float | None:
    return round(cpu_s / seconds, 2) if cpu_s is not None and seconds else None


def _print_level(loaded: Loaded, think_s: float) -> None:
    line = {
        **asdict(loaded.result),
        "think_ms": round(1000 * think_s, 1),
        "events_per_s": round(loaded.events_per_s),
        "worker_cpu": _share(loaded.worker_cpu_s, loaded.seconds),
        "generator_cpu": _share(loaded.generator_cpu_s, loaded.seconds),
    }
    print(json.dumps(line), flush=True)


def _event_rate(health: str, seconds: float) -> tuple[float, float]:
    """Events/s the worker handles over ``seconds`` with no requests but these two,
    and the seconds it was measured over."""
    start, started = _events(health), time.perf_counter()
    time.sleep(seconds)
    spent = time.perf_counter() - started
    return (_events(health) - start) / spent, spent


def _events(health: str) -> int:
    state = get_json(health)
    if state is None:
        raise RuntimeError(f"the worker stopped answering {health}")
    return state["events"]


def get_json(url: str, timeout: float = 5.0) -> dict | None:
    """The JSON a worker's API answers at ``url``; None when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:  # /health answers 503, with its figures, when not ready
        return json.load(exc)
    except OSError:
        return None


def _wait_for(ready, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the worker was not ready within {STARTUP_TIMEOUT_S:.0f} s:\n"
                f"{log.read_text(errors='replace')[-3000:]}"
            )
        time.sleep(0.5)


def main(
    data: str | None, max_concurrency: int, seconds: float, think_s: float, quick: bool = False
) -> None:
    workload = QUICK if quick else Workload()
    result = run(Path(data) if data else DEFAULT_DATA, max_concurrency, seconds, think_s, workload)
    print(json.dumps(result))
