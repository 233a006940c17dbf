"""Helpers for the reliability tests: known event streams, a paced producer, worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from storage import Checkpoint, StoreError, StoreReader
from storage.ranking import top_n

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def wait_for(predicate, timeout: float, what: str, every: float = 0.2):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def health(api: str, path: str = "/health") -> tuple[int, list[str]]:
    """A worker's answer to its health check: (HTTP status, reasons it is not ready).

    (0, [error]) while nothing answers on ``api``.
    """
    try:
        with urllib.request.urlopen(f"{api}{path}", timeout=5) as response:
            return response.status, json.load(response).get("reasons", [])
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc).get("reasons", [])
    except OSError as exc:
        return 0, [str(exc)]


def latest(db: Path) -> Checkpoint | None:
    """The store's latest checkpoint, or None while there is none."""
    try:
        return StoreReader(db).latest_checkpoint()
    except StoreError:
        return None


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def event(user: str, item: str, rating: float, timestamp: float = 1_700_000_000) -> bytes:
    return json.dumps(
        {"user": user, "item": item, "rating": rating, "timestamp": timestamp}
    ).encode()


@dataclass
class KnownStream:
    """A seeded stream of valid events (and a share of malformed ones) whose counts are known.

    Positive means ``rating >= 4``, the engine's default threshold.
    """

    users: int = 400
    items: int = 600
    bad_share: float = 0.02
    seed: int = 1
    uniform: bool = False  # every user and item alike, instead of a few popular ones

    def __post_init__(self):
        self.rng = random.Random(self.seed)
        self.sent = 0

    def next(self) -> tuple[bytes, str]:
        """One message and its kind: 'positive', 'negative' or 'bad'."""
        self.sent += 1
        rng = self.rng
        if rng.random() < self.bad_share:
            return b'{"user": "u1", "item": ', "bad"
        if self.uniform:
            user, item = f"u{rng.randrange(self.users)}", f"i{rng.randrange(self.items)}"
        else:
            user = f"u{min(int(rng.paretovariate(1.2)), self.users)}"
            item = f"i{min(int(rng.paretovariate(1.0)), self.items)}"
        rating = rng.choice((1, 2, 3, 4, 5, 5))
        payload = event(user, item, rating, 1_700_000_000 + self.sent)
        return payload, "positive" if rating >= 4 else "negative"


@dataclass
class SentCounts:
    total: int = 0
    positive: int = 0
    bad: int = 0
    per_partition: dict[int, int] = field(default_factory=dict)


class PacedProducer(threading.Thread):
    """Sends a KnownStream to a topic at ``rate`` messages/s from a thread of its own.

    Partitions are chosen round-robin, so the expected offsets are known.
    ``stop()`` ends the stream; ``counts`` then holds what the broker acknowledged.
    """

    def __init__(
        self, broker_url: str, topic: str, stream: KnownStream, rate: float, partitions: int = 1
    ):
        super().__init__(daemon=True)
        self.broker_url = broker_url
        self.topic = topic
        self.stream = stream
        self.rate = rate
        self.partitions = partitions
        self.counts = SentCounts()
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self.started_sending = threading.Event()

    def stop(self, timeout: float = 60) -> SentCounts:
        self._stopping.set()
        self.join(timeout)
        assert not self.is_alive(), "the producer did not stop"
        if self.error:
            raise self.error
        return self.counts

    def run(self) -> None:
        try:
            asyncio.run(self._send())
        except BaseException as exc:  # reported by stop()
            self.error = exc

    async def _send(self) -> None:
        from aiokafka import AIOKafkaProducer

        from engine.sources.kafka import bootstrap_servers, declare_topic

        await declare_topic(self.broker_url, self.topic, self.partitions)
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers(self.broker_url), linger_ms=5, acks=1
        )
        await producer.start()
        self.started_sending.set()
        started = time.monotonic()
        sent = 0
        try:
            while not self._stopping.is_set():
                batch = []
                for _ in range(50):
                    payload, kind = self.stream.next()
                    partition = sent % self.partitions
                    batch.append(
                        (
                            await producer.send(self.topic, payload, partition=partition),
                            kind,
                            partition,
                        )
                    )
                    sent += 1
                for future, kind, partition in batch:
                    await future
                    self._count(kind, partition)
                ahead = sent / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        finally:
            await producer.stop()

    def _count(self, kind: str, partition: int) -> None:
        counts = self.counts
        counts.total += 1
        counts.positive += kind == "positive"
        counts.bad += kind == "bad"
        counts.per_partition[partition] = counts.per_partition.get(partition, 0) + 1


class Worker:
    """`python -m engine worker` as a child process, its output in a log file."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        command: list[str] | None = None,
        cwd: Path = REPO,
    ):
        self.env = env
        self.log_path = log_path
        self.command = command or [PYTHON, "-m", "engine", "worker"]
        self.cwd = cwd
        self.process: subprocess.Popen | None = None
        self._log_offset = 0

    def start(self) -> Worker:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        """What this run of the worker has logged so far."""
        with open(self.log_path, errors="replace") as file:
            file.seek(self._log_offset)
            return file.read()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop_quietly(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait(30)


def engine_env_with(base: dict[str, str], **overrides) -> dict[str, str]:
    env = dict(base)
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def panel_rankings(db: Path, users: list[str], n: int = 10) -> dict[str, list[str]]:
    """Each user's top-``n`` item ids as the store's readers (the dashboard) see them."""
    reader = StoreReader(db)
    return {user: [r.item for r in reader.recommend(user, n).items] for user in users}


def processor_rankings(processor, users: list[str], n: int = 10) -> dict[str, list[str]]:
    """Each known user's top-``n`` item ids from a live processor, seen items excluded."""
    rec = processor.recommender
    result = {}
    for user in users:
        index = rec.user_index(user)
        if index is None:
            continue
        known = np.fromiter(processor.history.items(index), dtype=np.int64)
        best, _ = top_n(rec.scores(index), n, exclude=known)
        result[user] = [rec.item_ids[i] for i in best.tolist()]
    return result


def env_without_reco(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment minus any RECO_ setting the developer may have exported."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if not k.startswith("RECO_")}


def freeze(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until the kernel reports it stopped."""
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: _state(pid) in ("T", "t"), 10, f"process {pid} to stop", every=0.001)


def thaw(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


@dataclass(frozen=True)
class WalFrames:
    """What an SQLite WAL file holds: complete frames, and those after its last commit."""

    frames: int
    uncommitted: int


def wal_frames(wal: Path) -> WalFrames:
    """Count the valid frames of a WAL file (format: sqlite.org/fileformat2.html#walformat)."""
    try:
        data = wal.read_bytes()
    except FileNotFoundError:
        return WalFrames(0, 0)
    if len(data) < 32:
        return WalFrames(0, 0)
    page_size = int.from_bytes(data[8:12], "big")
    salts = data[16:24]
    frames = uncommitted = 0
    position = 32
    while position + 24 + page_size <= len(data):
        header = data[position : position + 24]
        if header[8:16] != salts:
            break  # a frame left over from before the WAL was last reset
        frames += 1
        committed_size = int.from_bytes(header[4:8], "big")
        uncommitted = 0 if committed_size else uncommitted + 1
        position += 24 + page_size
    return WalFrames(frames, uncommitted)


def send(
    broker_url: str,
    topic: str,
    messages: list[bytes | None],
    partitions: int = 1,
    max_request_size: int = 1024 * 1024,
) -> None:
    """Send ``messages`` in order, partition by partition round-robin, and wait for the acks."""

    async def go():
        from aiokafka import AIOKafkaProducer

        from engine.sources.kafka import bootstrap_servers, declare_topic

        await declare_topic(broker_url, topic, partitions)
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers(broker_url),
            linger_ms=5,
            acks=1,
            max_request_size=max_request_size,
        )
        await producer.start()
        try:
            pending = []
            for index, message in enumerate(messages):
                # A None value is a tombstone, which Kafka only takes with a key.
                key = b"tombstone" if message is None else None
                partition = index % partitions
                pending.append(await producer.send(topic, message, key=key, partition=partition))
                if len(pending) >= 500:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    asyncio.run(go())
