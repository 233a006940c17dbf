"""`python -m engine bench model`: the engine's learn-and-evaluate path as the model grows.

No broker: a synthetic stream, generated with numpy in chunks, goes straight
into StreamProcessor.observe_all in this process, in runs of 32 events as
the worker learns them. New users arrive all along
(``events`` / ``users`` events per user on average); items are drawn by a
Zipf law over ``items``, so new ones keep arriving too. Checkpoints are
written to a store every ``checkpoint_every`` events, as the engine writes
them every few seconds.

Each time the model reaches 10k, 100k and 1M users (and ``users`` itself)
it prints one JSON line:

- ``update_us``, ``evaluate_us``: mean time to learn one event and to rank
  one evaluated event, since the previous line; ``engine_events_per_s``:
  events observed per second of wall time over the same stretch (parsing
  and checkpoints not included);
- ``register_us``: mean time to register one new user or item id;
- ``rss_mb`` (now) and ``peak_rss_mb``;
- ``checkpoint_full_ms``: a checkpoint that rewrites every user's and item's
  row, built and written; ``checkpoint_mb``: the store's size after it;
- ``checkpoint_incremental_ms``: the next regular checkpoint, written once
  the stream has changed 10k users since the full one
  (``incremental_users``, ``incremental_items``, ``incremental_history_rows``
  say what it wrote);
- ``checkpoint_full_again_ms``: a second full checkpoint right after the
  first, to tell a first-time cost from a steady one (docs/benchmarks.md,
  "Checkpoints and huge pages");
- ``checkpoint_full_capture_ms``, ``checkpoint_full_again_capture_ms``,
  ``checkpoint_incremental_capture_ms``: the part of each spent taking the
  snapshot, which the worker does on its event loop (the rest, the write,
  runs in a thread of its own);
- ``lookup_p50_ms``, ``lookup_p99_ms``: StoreReader.recommend(user, n=10)
  from that store for random users, the first (cache-refreshing) one
  included.

``quick`` (``--quick``) caps the run at 2,000 users and 500 items, a few
seconds: it checks that the bench works and prints its keys, and its figures
mean nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.kernels import warm_up
from engine.processing.processor import ProcessorConfig, StreamProcessor
from engine.sources.events import Interaction
from storage import StoreReader, StoreWriter

MILESTONES = (10_000, 100_000, 1_000_000)
CHANGED_USERS = 10_000  # users changed before the incremental checkpoint is timed
LOOKUPS = 200
CHUNK = 50_000  # events generated per numpy call
RUN = 32  # events observed per call, as the worker's runs (engine.worker.agents.RUN_MAX)
QUICK_USERS = 2_000  # --quick: at most this many users and items, checkpoints this often
QUICK_ITEMS = 500
QUICK_CHECKPOINT_EVERY = 1_000


@dataclass(frozen=True)
class ModelBench:
    """What to run: sizes, the model, and how often to checkpoint."""

    users: int = 1_000_000
    items: int = 100_000
    events: int | None = None  # default: 3 per user
    eval_fraction: float = 0.02
    model: str = "hybrid"
    k: int | None = None  # factors, for factor models (mf, bprmf)
    checkpoint_every: int = 50_000  # events between regular checkpoints
    zipf: float = 1.0  # item popularity exponent
    seed: int = 7


def synthetic_events(bench: ModelBench) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Chunks of (user index, item index) int64 arrays, users numbered as they arrive.

    Each event comes from a new user with probability users / events, else
    from an earlier user drawn uniformly; items follow a Zipf law.
    """
    rng = np.random.default_rng(bench.seed)
    events = bench.events or 3 * bench.users
    p_new = min(1.0, bench.users / events)
    ranks = np.arange(1, bench.items + 1, dtype=np.float64)
    cdf = np.cumsum(ranks**-bench.zipf)
    cdf /= cdf[-1]
    # Popular items are not simply the first ids.
    item_ids = rng.permutation(bench.items)
    seen = 0
    while True:
        new = rng.random(CHUNK) < p_new
        if seen == 0:
            new[0] = True
        before = seen + np.cumsum(new) - new  # users seen before each event
        users = np.where(new, before, (rng.random(CHUNK) * np.maximum(before, 1)).astype(np.int64))
        seen = int(before[-1] + new[-1])
        items = item_ids[
            np.searchsorted(cdf, rng.random(CHUNK), side="right").clip(0, bench.items - 1)
        ]
        yield users, items


def run(bench: ModelBench, db: Path, emit=print) -> list[dict]:
    """Stream until the model has ``bench.users`` users; emit and return one dict per milestone."""
    warm_up()
    params = {"k": bench.k} if bench.k else None
    processor = StreamProcessor(
        ProcessorConfig(model=bench.model, model_params=params, eval_fraction=bench.eval_fraction)
    )
    rec = processor.recommender
    writer = StoreWriter(db)
    milestones = sorted({m for m in MILESTONES if m <= bench.users} | {bench.users})
    results: list[dict] = []
    window = _Window(processor)
    pending: dict | None = None  # a milestone waiting for its incremental checkpoint
    since_checkpoint = 0
    clock = 1_700_000_000.0
    run: list[Interaction] = []  # events not observed yet
    try:
        for users, items in synthetic_events(bench):
            for user, item in zip(users.tolist(), items.tolist(), strict=True):
                user_id, item_id = str(user), str(item)
                new_ids = (rec.user_index(user_id) is None) + (rec.item_index(item_id) is None)
                if new_ids:
                    started = time.perf_counter()
                    rec.register_user(user_id)
                    rec.register_item(item_id)
                    window.register_s += time.perf_counter() - started
                    window.new_ids += new_ids
                clock += 0.001
                run.append(Interaction(user_id, item_id, 5.0, clock))
                if len(run) < RUN and (pending is not None or rec.n_users < milestones[0]):
                    continue  # a run ends early where a milestone is reached
                started = time.perf_counter()
                processor.observe_all(run, None)
                window.observe_s += time.perf_counter() - started
                window.events += len(run)
                since_checkpoint += len(run)
                run = []
                if pending is None and since_checkpoint >= bench.checkpoint_every:
                    writer.write_checkpoint(processor.checkpoint())
                    since_checkpoint = 0
                if pending is None and rec.n_users >= milestones[0]:
                    pending = _reached(processor, writer, db, window, bench)
                elif pending is not None and processor.changed_users >= pending["changed"]:
                    result = _incremental(processor, writer, db, pending, bench)
                    results.append(result)
                    emit(json.dumps(result))
                    milestones.pop(0)
                    pending, since_checkpoint, window = None, 0, _Window(processor)
                    if not milestones:
                        return results
    finally:
        writer.close()
    return results


class _Window:
    """Costs summed since the previous milestone."""

    def __init__(self, processor: StreamProcessor):
        t = processor.timings
        self.update_s, self.updates = t.update_s, t.updates
        self.evaluate_s, self.evaluations = t.evaluate_s, t.evaluations
        self.observe_s = 0.0
        self.events = 0
        self.register_s = 0.0
        self.new_ids = 0


def _reached(
    processor: StreamProcessor, writer: StoreWriter, db: Path, window: _Window, bench: ModelBench
) -> dict:
    """The milestone's costs so far, then a full checkpoint; the stream goes on after it."""
    rec = processor.recommender
    t = processor.timings
    updates, evaluations = t.updates - window.updates, t.evaluations - window.evaluations
    result = {
        "benchmark": "model",
        "model": rec.model,
        "users": rec.n_users,
        "items": rec.n_items,
        "events": processor.totals.positive,
        "eval_fraction": bench.eval_fraction,
        "update_us": _us(t.update_s - window.update_s, updates),
        "evaluate_us": _us(t.evaluate_s - window.evaluate_s, evaluations),
        "engine_events_per_s": round(window.events / window.observe_s)
        if window.observe_s
        else None,
        "register_us": _us(window.register_s, window.new_ids),
        "rss_mb": _rss_mb(),
    }
    for key in ("checkpoint_full", "checkpoint_full_again"):
        started = time.perf_counter()
        write = processor.checkpoint(full=True)
        captured = time.perf_counter()
        writer.write_checkpoint(write)
        result[f"{key}_ms"] = round(1000 * (time.perf_counter() - started), 1)
        result[f"{key}_capture_ms"] = round(1000 * (captured - started), 1)
        del write  # written: one snapshot at a time, as the worker holds them
    result["checkpoint_mb"] = round(_store_bytes(db) / 1e6, 1)
    # The stream goes on until this many users changed: then the regular checkpoint.
    result["changed"] = min(CHANGED_USERS, rec.n_users)
    return result


def _incremental(
    processor: StreamProcessor, writer: StoreWriter, db: Path, result: dict, bench: ModelBench
) -> dict:
    """Time the regular checkpoint of ``result['changed']`` changed users; then lookups."""
    del result["changed"]
    started = time.perf_counter()
    write = processor.checkpoint()
    captured = time.perf_counter()
    writer.write_checkpoint(write)
    result["checkpoint_incremental_ms"] = round(1000 * (time.perf_counter() - started), 1)
    result["checkpoint_incremental_capture_ms"] = round(1000 * (captured - started), 1)
    result["incremental_users"] = len(write.touched_users)
    result["incremental_items"] = len(write.item_bias)
    result["incremental_history_rows"] = len(write.history_added)
    result.update(_lookups(db, processor.recommender.user_ids, bench.seed))
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["cores"] = os.cpu_count()
    return result


def _lookups(db: Path, user_ids: list[str], seed: int) -> dict:
    reader = StoreReader(db)
    rng = np.random.default_rng(seed + 2)
    timings = []
    for user in rng.integers(0, len(user_ids), LOOKUPS).tolist():
        started = time.perf_counter()
        reader.recommend(user_ids[user], n=10)
        timings.append(1000 * (time.perf_counter() - started))
    return {
        "lookup_p50_ms": round(float(np.percentile(timings, 50)), 2),
        "lookup_p99_ms": round(float(np.percentile(timings, 99)), 2),
        "lookup_first_ms": round(timings[0], 2),
    }


def _us(seconds: float, count: int) -> float | None:
    return round(1e6 * seconds / count, 2) if count else None


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 1e6, 1)


def _store_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def capped(bench: ModelBench) -> ModelBench:
    """``bench`` capped to a run of a few seconds (``--quick``)."""
    users = min(bench.users, QUICK_USERS)
    return dataclasses.replace(
        bench,
        users=users,
        items=min(bench.items, QUICK_ITEMS),
        events=min(bench.events, 3 * users) if bench.events else None,
        checkpoint_every=min(bench.checkpoint_every, QUICK_CHECKPOINT_EVERY),
    )


def main(bench: ModelBench, db: str | None = None, quick: bool = False) -> None:
    if quick:
        bench = capped(bench)
    if db:
        run(bench, Path(db))
        return
    with tempfile.TemporaryDirectory(prefix="reco-bench-model-") as tmp:
        run(bench, Path(tmp) / "reco.db")
