"""Writes checkpoints from a thread of its own, so SQLite never blocks the event loop."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from storage import Checkpoint, CheckpointWrite, ModelState, StoreWriter, WriterLock

log = logging.getLogger(__name__)

# Failed checkpoints kept for a retry before the engine gives up and stops.
MAX_PENDING = 12


class CheckpointFailed(RuntimeError):
    """The store refused checkpoints too many times in a row; restart from the last one."""


class Checkpointer:
    """Owns the store's writer connection, on one dedicated thread (SQLite binds to threads).

    Each checkpoint carries only what changed since the previous one, so a
    write that fails (the disk is full, another program locks the file) is
    kept and written again, in order, before the next one: the store never
    skips a delta. After MAX_PENDING failures in a row it raises
    CheckpointFailed; a restart then resumes from the last stored checkpoint.
    """

    def __init__(
        self,
        path: Path,
        *,
        keep_snapshots: int,
        metrics_retention_s: float,
        keep_rejected: int = 10_000,
    ):
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._writer: StoreWriter | None = None
        self._lock = WriterLock(path)  # held from open() to close(): one writer per store
        self._kwargs = {
            "keep_snapshots": keep_snapshots,
            "metrics_retention_s": metrics_retention_s,
            "keep_rejected": keep_rejected,
        }
        self._pending: list[CheckpointWrite] = []  # touched by the writer thread only
        self.written = 0
        self.closed = False  # set by close(): nothing is written or read after it

    def open(self) -> tuple[Checkpoint, ModelState] | None:
        """Open the store (raising StoreError if it cannot be used) and load its latest state."""
        return self._executor.submit(self._open).result()

    def write_now(self, checkpoint: CheckpointWrite) -> int:
        """Write a checkpoint and wait for it (used at shutdown)."""
        return self._executor.submit(self._write, checkpoint).result()

    def submit(self, checkpoint: CheckpointWrite) -> asyncio.Future:
        """Queue a checkpoint's write now, in order; the future gives its id."""
        return asyncio.wrap_future(self._executor.submit(self._write, checkpoint))

    async def write(self, checkpoint: CheckpointWrite) -> int:
        """Write a checkpoint (and any that failed before it); returns its id."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._write, checkpoint
        )

    @property
    def pending(self) -> int:
        """Checkpoints that failed to write and wait for the next attempt."""
        return len(self._pending)

    def item_names_now(self, after: int = 0) -> tuple[dict[str, str], int]:
        """Item display names added since cursor ``after``, and the next cursor (waits)."""
        return self._executor.submit(self._item_names, after).result()

    async def item_names(self, after: int = 0) -> tuple[dict[str, str], int]:
        """The same, read on the store's thread without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._item_names, after
        )

    def close(self) -> None:
        self.closed = True
        if self._writer is not None:
            self._executor.submit(self._writer.close).result()
            self._writer = None
        self._executor.shutdown(wait=True)
        self._lock.release()

    def _open(self) -> tuple[Checkpoint, ModelState] | None:
        self._lock.acquire()  # StoreLocked while another worker writes this store
        self._writer = StoreWriter(self.path, **self._kwargs)
        return self._writer.latest()

    def _write(self, checkpoint: CheckpointWrite) -> int:
        assert self._writer is not None, "open() first"
        self._pending.append(checkpoint)
        checkpoint_id = 0
        while self._pending:
            try:
                checkpoint_id = self._writer.write_checkpoint(self._pending[0])
            except Exception as exc:
                if len(self._pending) >= MAX_PENDING:
                    raise CheckpointFailed(
                        f"{len(self._pending)} checkpoints in a row could not be written to "
                        f"{self.path} ({exc}); stopping so that a restart resumes from the "
                        "last stored one"
                    ) from exc
                log.error(
                    "checkpoint not written to %s (%s); %d waiting, retrying with the next",
                    self.path,
                    exc,
                    len(self._pending),
                )
                raise
            self._pending.pop(0)
            self.written += 1
        return checkpoint_id

    def _item_names(self, after: int) -> tuple[dict[str, str], int]:
        assert self._writer is not None, "open() first"
        return self._writer.item_names(after)
