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
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.bench.load import LevelResult, run_level
from engine.broker import HOST, EmbeddedBroker, free_port
from engine.movielens import read_item_names, read_ratings
from engine.producer import send_messages, store_item_names

TOPIC = "bench-serve-events"
DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ml-100k" / "u.data"
COPIES = 8  # replays of the file back to back: a backlog that outlasts the run
WARMUP_EVENTS = 20_000  # the model has most users and items before the first phase
MAX_REQUESTS_PER_LEVEL = 50_000
STARTUP_TIMEOUT_S = 120.0


def replay(path: Path, copies: int) -> list[bytes]:
    """The file's ratings ``copies`` times over, each copy later than the one before."""
    ratings = read_ratings(path)
    first, last = ratings[0].timestamp, ratings[-1].timestamp
    span = last - first + 1.0
    return [
        json.dumps({**r.as_event(), "timestamp": r.timestamp + copy * span}).encode()
        for copy in range(copies)
        for r in ratings
    ]


def levels_up_to(maximum: int) -> list[int]:
    return sorted({c for c in (1, 10, 25, 50, 100) if c < maximum} | {maximum})


def run(data: Path, max_concurrency: int, seconds: float, think_s: float) -> dict:
    messages = replay(data, COPIES)
    total = len(messages)
    users = sorted({json.loads(m)["user"] for m in messages[: total // COPIES]})
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
            try:
                return _measure(port, paths, total, max_concurrency, seconds, think_s, log_path)
            finally:
                worker.terminate()
                try:
                    worker.wait(30)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait()


def _measure(
    port: int,
    paths: list[str],
    total: int,
    max_concurrency: int,
    seconds: float,
    think_s: float,
    log: Path,
) -> dict:
    health = f"http://{HOST}:{port}/health"
    _wait_for(lambda: (_get(health) or {}).get("events", 0) >= WARMUP_EVENTS, log)
    for concurrency in levels_up_to(max_concurrency)[:-1]:
        _print_level(_load(health, port, paths, concurrency, seconds, think_s), think_s)
    # The highest level alternates with quiet spells of the same length, so the
    # event rates with and without load are measured side by side: the machine's
    # other work drifts, and it drifts alike for both.
    top = _alternate(health, port, paths, max_concurrency, seconds, think_s)
    _print_level(top.load, think_s)
    # And the worst case: every client sends its next request as soon as it can.
    flood = _alternate(health, port, paths, max_concurrency, seconds, 0.0, rounds=1)
    _print_level(flood.load, 0.0)
    state = _get(health) or {}
    if state.get("events", 0) >= total:
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
        "items": state.get("items"),
        "users": state.get("users"),
        "model": state.get("model"),
        "event_loop": state.get("event_loop"),
        "cores": os.cpu_count(),
    }


@dataclass
class Loaded:
    """Spells of load: every answer's latency (seconds), and the events handled meanwhile."""

    concurrency: int
    latencies_s: list[float]
    errors: int
    seconds: float
    events: int

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

    @property
    def ratio(self) -> float | None:
        return round(self.load.events_per_s / self.quiet_rate, 3) if self.quiet_rate else None


def _load(
    health: str, port: int, paths: list[str], concurrency: int, seconds: float, think_s: float
) -> Loaded:
    start = _events(health)
    latencies, errors, spent = asyncio.run(
        run_level(HOST, port, paths, concurrency, seconds, MAX_REQUESTS_PER_LEVEL, think_s)
    )
    return Loaded(concurrency, latencies, errors, spent, _events(health) - start)


def _alternate(
    health: str,
    port: int,
    paths: list[str],
    concurrency: int,
    seconds: float,
    think_s: float,
    rounds: int = 3,
) -> Alternated:
    """Quiet, load, quiet, load, ... ``rounds`` times, then quiet once more."""
    quiet_events, quiet_s = 0.0, 0.0
    merged = Loaded(concurrency, [], 0, 0.0, 0)
    for round_ in range(rounds + 1):
        rate, spent = _event_rate(health, seconds)
        quiet_events, quiet_s = quiet_events + rate * spent, quiet_s + spent
        if round_ == rounds:
            break
        spell = _load(health, port, paths, concurrency, seconds, think_s)
        merged = Loaded(
            concurrency,
            merged.latencies_s + spell.latencies_s,
            merged.errors + spell.errors,
            merged.seconds + spell.seconds,
            merged.events + spell.events,
        )
    return Alternated(merged, quiet_events / quiet_s)


def _print_level(loaded: Loaded, think_s: float) -> None:
    line = {
        **asdict(loaded.result),
        "think_ms": round(1000 * think_s, 1),
        "events_per_s": round(loaded.events_per_s),
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
    state = _get(health)
    if state is None:
        raise RuntimeError(f"the worker stopped answering {health}")
    return state["events"]


def _get(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)
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


def main(data: str | None, max_concurrency: int, seconds: float, think_s: float) -> None:
    result = run(Path(data) if data else DEFAULT_DATA, max_concurrency, seconds, think_s)
    print(json.dumps(result))
