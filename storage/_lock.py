"""One writer per store: a lock that a second worker on the same file cannot take.

An advisory lock (flock) on the database file itself. SQLite's own locks
are POSIX record locks, which Linux keeps apart from flock locks, so the two
never meet; readers (the dashboard, ``status``) take no flock and are never
held up. The kernel drops the lock when its holder exits, however it exits,
so a worker killed with SIGKILL leaves nothing that blocks a restart, and no
file is added beside the store.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from storage.errors import StoreError, StoreLocked


class WriterLock:
    """Held from acquire() to release() (or the process's end) by one process at a time.

    Release it only once the process's SQLite connections to the file are
    closed: closing any descriptor of a file drops the POSIX locks the
    process holds on it, SQLite's included.
    """

    def __init__(self, store: str | Path):
        self.store = Path(store)
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        """Take the lock, or raise StoreLocked naming the process that holds it."""
        try:
            fd = os.open(self.store, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(
                f"cannot open {self.store} ({exc.strerror}): give a path in a folder this user "
                "may write (--db or RECO_DB)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise StoreLocked(
                f"{self.store} is being written by {holder}: stop that worker first, or give "
                "this one a store of its own (--db or RECO_DB)"
            ) from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(fd: int) -> str:
    """Who holds the flock on ``fd``'s file, from /proc/locks: "pid N (command) on HOST"."""
    stat = os.fstat(fd)
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return "another process"
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or "->" in fields[:2]:
            continue
        major, minor, inode = fields[5].split(":")
        if (int(major, 16), int(minor, 16), int(inode)) == (
            os.major(stat.st_dev),
            os.minor(stat.st_dev),
            stat.st_ino,
        ):
            return f"pid {fields[4]} ({_command(fields[4])}) on {socket.gethostname()}"
    return "another process"


def _command(pid: str) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "unknown command"
    return " ".join(arg.decode(errors="replace") for arg in argv if arg)[:80]
