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
