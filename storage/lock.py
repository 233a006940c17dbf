"""One writer per store: a lock that a second worker on the same file cannot take.

An advisory lock (flock) on a file beside the store, ``reco.db.lock``,
holding who took it. The kernel drops it when its holder exits, however it
exits, so a worker killed with SIGKILL leaves nothing that blocks a restart.
The store itself stays readable by anyone (the dashboard, ``status``).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from storage.errors import StoreLocked


class WriterLock:
    """Held from acquire() to release() (or the process's end) by one process at a time."""

    def __init__(self, store: str | Path):
        self.store = Path(store)
        self.path = self.store.with_name(self.store.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        """Take the lock, or raise StoreLocked naming the process that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StoreLocked(
                f"{self.store} is being written by {holder}: stop that worker first, or "
                "give this one a store of its own (--db or RECO_DB)"
            ) from None
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {started}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops the lock
            self._fd = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
