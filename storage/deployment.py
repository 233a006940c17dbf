"""A deployment seen through its stores: each worker's own figures, and the partitions' sums.

Several workers in one consumer group each write their own store. A
partition's counters move with it from worker to worker, so the deployment's
figures are, for each partition, its most advanced state in any store (the
highest offset; ties: the newest checkpoint), summed over partitions: a plain
sum of the stores would count a moved partition once per worker that held it.
A store without partition rows (written before migration 0013, or offline)
adds its latest checkpoint's totals, as a lone store always did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from storage.errors import NoCheckpoint, StoreListError
from storage.reader import StoreReader
from storage.records import Checkpoint, PartitionPoint, Totals

# A worker's latest events/s counts in the deployment's while its last
# checkpoint is this recent next to the newest of any worker (as the
# dashboard judges a worker alive): max(ALIVE_MIN_S, ALIVE_CHECKPOINTS x its interval).
ALIVE_CHECKPOINTS = 3
ALIVE_MIN_S = 15.0


def store_paths(spec: str | Path) -> list[Path]:
    """The stores RECO_DB / --db names: one path, a comma-separated list, or a folder of ``*.db``.

    One path comes back as it is, whether or not the file exists yet. Raises
    StoreListError saying what to fix for an empty item, a folder in a list, a
    store named twice, or a folder without stores.

    >>> store_paths("data/worker-1.db, data/worker-2.db")
    [PosixPath('data/worker-1.db'), PosixPath('data/worker-2.db')]
    >>> store_paths("data/reco.db")
    [PosixPath('data/reco.db')]
    """
    text = str(spec).strip()
    if not text:
        raise StoreListError("no store named; give a path such as data/reco.db")
    if "," not in text:
        path = Path(text)
        if not path.is_dir():
            return [path]
        stores = sorted(p for p in path.glob("*.db") if p.is_file())
        if not stores:
            raise StoreListError(
                f"the folder {path} holds no *.db store; start a worker with "
                f"--db {path / 'worker-1.db'}, or name store files"
            )
        return stores
    paths: list[Path] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise StoreListError(
                f"{text!r} has an empty item; separate store files with single commas, "
                "e.g. data/worker-1.db,data/worker-2.db"
            )
        path = Path(item)
        if path.is_dir():
            raise StoreListError(
                f"{item} in the list is a folder; list store files, or give the folder alone"
            )
        if path in paths:
            raise StoreListError(f"{item} is named twice; name each store once")
        paths.append(path)
    return paths


@dataclass(frozen=True)
class WorkerView:
    """One store's latest checkpoint: what its worker did itself, and what it owns."""

    store: str  # the store's path
    worker: str | None  # "host:port" of the worker's API; None when not recorded
    checkpoint: Checkpoint
    counted_by_partition: bool  # False: the store has no partition rows; its totals count

    @property
    def partitions(self) -> list[int]:
        """The partitions the worker owned at its latest checkpoint."""
        return [p.partition for p in self.checkpoint.partitions]

    @property
    def time(self) -> float:
        return self.checkpoint.time

    @property
    def totals(self) -> Totals:
        """The events this worker processed itself, since its store was created."""
        return self.checkpoint.totals

    @property
    def events_per_s(self) -> float:
        """Messages per second over the worker's latest checkpoint interval."""
        interval = self.checkpoint.interval
        return interval.received / interval.interval_s if interval.interval_s else 0.0

    @property
    def recall_at_10(self) -> float | None:
        return self.checkpoint.recall_at_10


@dataclass(frozen=True)
class PartitionView:
    """One partition's most advanced state in any store, and which store and worker hold it."""

    store: str
    point: PartitionPoint
    owned: bool  # that store's latest checkpoint still owns the partition

    @property
    def partition(self) -> int:
        return self.point.state.partition

    @property
    def worker(self) -> str | None:
        return self.point.worker

    @property
    def offset(self) -> int:
        return self.point.state.offset

    @property
    def lag(self) -> int | None:
        return self.point.state.lag

    @property
    def totals(self) -> Totals:
        return self.point.state.totals


@dataclass(frozen=True)
class Deployment:
    """The deployment's figures from its stores (module docstring: how they add up)."""

    workers: list[WorkerView]  # in the order the stores were given
    partitions: list[PartitionView]  # by partition
    totals: Totals
    waiting: list[str]  # stores with no checkpoint yet (a worker just started)

    @property
    def time(self) -> float:
        """The newest checkpoint of any worker, Unix seconds."""
        return max(w.time for w in self.workers)

    @property
    def newest(self) -> WorkerView:
        return max(self.workers, key=lambda w: (w.time, -self.workers.index(w)))

    @property
    def events_per_s(self) -> float:
        """Messages per second of the workers still checkpointing, each over its last interval."""
        newest = self.time
        return sum(
            w.events_per_s
            for w in self.workers
            if newest - w.time
            < max(ALIVE_MIN_S, ALIVE_CHECKPOINTS * w.checkpoint.interval.interval_s)
        )

    @property
    def recall_at_10(self) -> float | None:
        """Prequential recall@10 of the deployment: its hits over its evaluated events."""
        return self.totals.recall_at_10

    @property
    def popular_recall_at_10(self) -> float | None:
        return self.totals.popular_recall_at_10

    @property
    def lag(self) -> int | None:
        """Messages behind the broker's end over the partitions that report it."""
        lags = [p.lag for p in self.partitions if p.lag is not None]
        return sum(lags) if lags else None


def read_deployment(paths: Sequence[str | Path]) -> Deployment:
    """Read every store's latest checkpoint and partition rows; add them up as a deployment.

    Raises StoreMissing or StoreError naming the store that is missing or
    unreadable, and NoCheckpoint when no store has a checkpoint yet; a store
    without one while others have theirs is listed in ``waiting``.
    """
    workers: list[WorkerView] = []
    waiting: list[str] = []
    best: dict[int, PartitionView] = {}
    totals = Totals()
    for path in paths:
        reader = StoreReader(path)
        try:
            checkpoint = reader.latest_checkpoint()
        except NoCheckpoint:
            waiting.append(str(path))
            continue
        points = reader.partitions()
        owned = {p.partition for p in checkpoint.partitions}
        workers.append(WorkerView(str(path), checkpoint.worker, checkpoint, bool(points)))
        if not points:
            totals = totals.plus(checkpoint.totals)
        for point in points:
            state = point.state
            known = best.get(state.partition)
            if known is None or (state.offset, point.time) > (known.offset, known.point.time):
                best[state.partition] = PartitionView(str(path), point, state.partition in owned)
    if not workers:
        who = "the engine" if len(waiting) == 1 else "the workers"
        raise NoCheckpoint(f"no checkpoint in {', '.join(waiting)} yet; start {who} with ./run.sh")
    partitions = [best[p] for p in sorted(best)]
    for view in partitions:
        totals = totals.plus(view.totals)
    return Deployment(workers=workers, partitions=partitions, totals=totals, waiting=waiting)
