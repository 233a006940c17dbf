"""Stores for tests: written with plausible data (the dashboard's), and read as a test waits.

Also what a store's files hold: its WAL's frames.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storage import (
    Checkpoint,
    CheckpointWrite,
    IntervalMetrics,
    OnlineCounts,
    PartitionState,
    RejectedEvent,
    StoreError,
    StoreReader,
    StoreWriter,
    Totals,
)

K = 8

_WORDS = (
    "Silent",
    "Harbor",
    "Midnight",
    "Garden",
    "Iron",
    "River",
    "Paper",
    "Moon",
    "Last",
    "Summer",
    "Glass",
    "Empire",
    "Wild",
    "Orchard",
    "Northern",
    "Lights",
    "Hidden",
    "Valley",
    "Crimson",
    "Tide",
)

REJECTED_SAMPLES = (
    ("not valid JSON", '{"user": 1, "item": '),
    ("missing field 'item'", '{"user": "7", "rating": 5, "timestamp": 1700000000}'),
    ("'user' must be a string or an integer, not list", '{"user": [1], "item": 2}'),
    ("payload too large (70000 bytes > 65536)", "x" * 300 + "... (70000 bytes)"),
    ("not UTF-8", '\ufffd\ufffd{"user": "héllo ☃"}'),
)


@dataclass(frozen=True)
class StoreFacts:
    """What a test store holds, for assertions."""

    path: Path
    users: list[str]  # in registration order
    items: list[str]
    names: dict[str, str]
    checkpoints: int
    end: float  # time of the last checkpoint, Unix seconds


def write_store(
    path: Path,
    checkpoints: int = 30,
    interval_s: float = 5.0,
    end: float | None = None,
    seed: int = 7,
    broker_connected: bool | None = True,
) -> StoreFacts:
    """Write ``checkpoints`` checkpoints of a growing model, the last one at ``end`` (now).

    ``broker_connected`` is what the last checkpoint says about the broker.
    """
    rng = np.random.default_rng(seed)
    end = time.time() if end is None else end
    writer = StoreWriter(path)
    totals = Totals()
    users: list[str] = []
    items: list[str] = []
    user_factors = np.zeros((0, K), dtype=np.float32)
    item_factors = np.zeros((0, K), dtype=np.float32)
    seq = 0
    try:
        for c in range(checkpoints):
            t = end - (checkpoints - 1 - c) * interval_s
            new_users = [str(len(users) + i + 1) for i in range(20 if c == 0 else 2)]
            new_items = [str(len(items) + i + 1) for i in range(60 if c == 0 else 2)]
            users += new_users
            items += new_items
            user_factors = np.vstack(
                [user_factors, rng.normal(0, 0.3, (len(new_users), K))]
            ).astype(np.float32)
            item_factors = (
                np.vstack([item_factors, rng.normal(0, 0.3, (len(new_items), K))])
                + rng.normal(0, 0.01, (len(items), K))
            ).astype(np.float32)
            popularity = (1000.0 / np.arange(1, len(items) + 1) ** 0.8).astype(np.float32)

            received = int(1500 + 200 * math.sin(c / 3) + rng.integers(0, 50))
            rejected_n = int(rng.integers(1, 4))
            accepted = received - rejected_n
            positive = int(accepted * 0.4)
            evaluated = positive
            model_rate = 0.03 + 0.06 * c / max(1, checkpoints - 1)
            interval = IntervalMetrics(
                interval_s=interval_s,
                received=received,
                accepted=accepted,
                positive=positive,
                rejected=rejected_n,
                evaluated=evaluated,
                model_hits=int(evaluated * model_rate),
                popular_hits=int(evaluated * 0.07),
                update_us=9.0 + float(rng.normal(0, 0.5)),
                evaluate_us=50.0 + float(rng.normal(0, 3)),
                lag=max(0, 4000 - 150 * c),
                factor_change=None if c == 0 else 0.2 * math.exp(-c / 6) + 0.01,
                panel_overlap=None if c == 0 else min(0.95, 0.3 + 0.03 * c),
            )
            for name in (
                "received",
                "accepted",
                "positive",
                "rejected",
                "evaluated",
                "model_hits",
                "popular_hits",
            ):
                setattr(totals, name, getattr(totals, name) + getattr(interval, name))

            active = rng.choice(len(users), size=min(10, len(users)), replace=False)
            history = []
            for user_idx in active:
                for item_idx in rng.choice(len(items), size=3, replace=False):
                    seq += 1
                    history.append((int(user_idx), int(item_idx), t - 1.0, seq))
            rejected = [
                RejectedEvent(
                    time=t - 0.5 * i,
                    reason=reason,
                    partition=0,
                    offset=totals.received - i,
                    payload=payload,
                )
                for i, (reason, payload) in enumerate(
                    REJECTED_SAMPLES[(c + j) % len(REJECTED_SAMPLES)] for j in range(rejected_n)
                )
            ]
            touched = np.arange(len(users), dtype=np.int64)
            # The live API's lists: the model's are taken more often than the baseline's.
            shown = int(rng.integers(80, 120))
            online = [
                OnlineCounts("model", shown, int(shown * 0.45)),
                OnlineCounts("baseline", shown // 4, int(shown // 4 * 0.3)),
            ]
            writer.write_checkpoint(
                CheckpointWrite(
                    time=t,
                    topic="flurs-events",
                    offsets={0: totals.received},
                    totals=Totals(**vars(totals)),
                    interval=interval,
                    model="mf",
                    params={"k": K, "learn_rate": 0.05},
                    score_rule="dot",
                    n_users=len(users),
                    n_items=len(items),
                    new_user_ids=new_users,
                    new_item_ids=new_items,
                    touched_users=touched,
                    touched_user_factors=user_factors[touched],
                    item_factors=item_factors,
                    item_bias=np.zeros(len(items), dtype=np.float32),
                    item_counts=popularity,
                    history_added=history,
                    history_removed=[],
                    rejected=rejected,
                    broker_connected=broker_connected if c == checkpoints - 1 else True,
                    stalled_since=None if broker_connected is not False else t - 20.0,
                    online=online,
                )
            )
        names = {item: _title(int(item)) for item in items}
        writer.put_item_names(names)
    finally:
        writer.close()
    return StoreFacts(
        path=path, users=users, items=items, names=names, checkpoints=checkpoints, end=end
    )


def append_checkpoint(path: Path, received: int = 2500, at: float | None = None) -> int:
    """Write one more checkpoint on top of an existing store: events flow, the model stays."""
    writer = StoreWriter(path)
    try:
        latest, state = writer.latest()
        interval = IntervalMetrics(
            interval_s=5.0,
            received=received,
            accepted=received,
            positive=received // 2,
            evaluated=received // 2,
            model_hits=received // 20,
            popular_hits=received // 25,
            update_us=9.0,
            evaluate_us=50.0,
            lag=0,
            factor_change=0.01,
            panel_overlap=0.9,
        )
        totals = Totals(
            **{name: value + getattr(interval, name) for name, value in vars(latest.totals).items()}
        )
        k = state.item_factors.shape[1]
        return writer.write_checkpoint(
            CheckpointWrite(
                time=time.time() if at is None else at,
                topic=latest.topic,
                offsets={0: totals.received},
                totals=totals,
                interval=interval,
                model=latest.model,
                params=latest.params,
                score_rule=state.score_rule,
                n_users=len(state.user_ids),
                n_items=len(state.item_ids),
                new_user_ids=[],
                new_item_ids=[],
                touched_users=np.empty(0, dtype=np.int64),
                touched_user_factors=np.empty((0, k), dtype=np.float32),
                item_factors=state.item_factors,
                item_bias=state.item_bias,
                item_counts=state.item_counts,
                history_added=[],
                history_removed=[],
            )
        )
    finally:
        writer.close()


def write_empty_store(path: Path) -> Path:
    """Create a store with its schema and no checkpoint, as a just-started engine leaves it."""
    StoreWriter(path).close()
    return path


def latest(db: Path) -> Checkpoint | None:
    """The store's latest checkpoint, or None while there is none."""
    try:
        return StoreReader(db).latest_checkpoint()
    except StoreError:
        return None


def panel_rankings(db: Path, users: list[str], n: int = 10) -> dict[str, list[str]]:
    """Each user's top-``n`` item ids as the store's readers (the dashboard) see them."""
    reader = StoreReader(db)
    return {user: [r.item for r in reader.recommend(user, n).items] for user in users}


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


def _title(item: int) -> str:
    first = _WORDS[item % len(_WORDS)]
    second = _WORDS[(item * 7 + 3) % len(_WORDS)]
    return f"{first} {second} ({1960 + item % 60})"


@dataclass(frozen=True)
class WorkerCheckpoint:
    """One checkpoint of a deployment's worker: when, its own totals, the partitions it owns."""

    time: float
    own: Totals  # what this worker processed itself, since its store was created
    partitions: list[PartitionState]
    interval_received: int = 0  # messages in the interval that ends here
    interval_s: float = 5.0


def partition(number: int, offset: int, received: int, lag: int | None = None) -> PartitionState:
    """A partition's state whose counts follow from ``received`` (a fixed share of each kind)."""
    return PartitionState(number, offset, counts(received), lag)


def counts(received: int) -> Totals:
    """Totals with every counter a share of ``received``, so sums of them stay checkable."""
    positive = received // 2
    return Totals(
        received=received,
        accepted=received - received // 10,
        positive=positive,
        rejected=received // 10,
        evaluated=positive,
        model_hits=positive // 4,
        popular_hits=positive // 5,
    )


def write_worker_store(
    path: Path,
    worker: str | None,
    checkpoints: list[WorkerCheckpoint],
    metrics_retention_s: float = 7 * 86400,
) -> Path:
    """A deployment worker's store: checkpoints of a model with no state, with partition rows."""
    writer = StoreWriter(path, metrics_retention_s=metrics_retention_s)
    empty = np.empty((0, K), dtype=np.float32)
    try:
        for cp in checkpoints:
            writer.write_checkpoint(
                CheckpointWrite(
                    time=cp.time,
                    topic="flurs-events",
                    offsets={p.partition: p.offset for p in cp.partitions},
                    totals=cp.own,
                    interval=IntervalMetrics(
                        interval_s=cp.interval_s, received=cp.interval_received
                    ),
                    model="hybrid",
                    params={},
                    score_rule="dot",
                    n_users=0,
                    n_items=0,
                    new_user_ids=[],
                    new_item_ids=[],
                    touched_users=np.empty(0, dtype=np.int64),
                    touched_user_factors=empty,
                    item_factors=empty,
                    item_bias=np.empty(0, dtype=np.float32),
                    item_counts=np.empty(0, dtype=np.float32),
                    history_added=[],
                    history_removed=[],
                    partitions=cp.partitions,
                    worker=worker,
                )
            )
    finally:
        writer.close()
    return path


@dataclass(frozen=True)
class DeploymentFacts:
    """Two workers' stores in which partitions 0 and 1 moved from the first to the second."""

    stores: list[Path]
    workers: list[str]
    newest: dict[int, tuple[Path, PartitionState]]  # what the deployment counts, per partition
    own: list[Totals]  # each store's own latest totals, in store order
    interval_received: list[int]  # each store's latest interval, in store order


def write_deployment(folder: Path, now: float | None = None) -> DeploymentFacts:
    """A deployment whose first worker died a minute ago; the second took over its partitions.

    The second worker resumed partition 0 from a state older than the first
    worker's last checkpoint of it (its changelog lagged), so it processed
    some events of partition 0 again: a plain sum of the stores counts them twice.
    """
    now = time.time() if now is None else now
    first, second = folder / "worker-1.db", folder / "worker-2.db"
    workers = ["127.0.0.1:6067", "127.0.0.1:6068"]
    folder.mkdir(parents=True, exist_ok=True)
    dead = [partition(0, 160, 160, lag=40), partition(1, 80, 80, lag=12)]
    write_worker_store(
        first,
        workers[0],
        [
            WorkerCheckpoint(now - 65, counts(150), [partition(0, 100, 100), partition(1, 50, 50)]),
            WorkerCheckpoint(now - 60, counts(240), dead, interval_received=90),
        ],
    )
    resumed_from = 150  # partition 0's state in the changelog, behind the first store's 160
    taken = [partition(0, 210, 210, lag=5), partition(1, 120, 120, lag=0), partition(2, 70, 70)]
    own_second = counts(30 + (70 - 30) + (210 - resumed_from) + (120 - 80))
    write_worker_store(
        second,
        workers[1],
        [
            WorkerCheckpoint(now - 6, counts(30), [partition(2, 30, 30, lag=3)]),
            WorkerCheckpoint(now - 1, own_second, taken, interval_received=140),
        ],
    )
    return DeploymentFacts(
        stores=[first, second],
        workers=workers,
        newest={p.partition: (second, p) for p in taken},
        own=[counts(240), own_second],
        interval_received=[90, 140],
    )
