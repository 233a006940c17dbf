"""Opening the database file: read-write for the engine, read-only for everyone else."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlite_utils import Database

from storage._schema import MIGRATION_SET, migrations
from storage.errors import StoreCorrupt, StoreError, StoreMissing

# A writer waits this long for a lock held by a reader's WAL snapshot.
BUSY_TIMEOUT_MS = 5000
# Bytes the WAL file is cut back to whenever SQLite resets it.
WAL_SIZE_LIMIT = 16 * 1024 * 1024
SQLITE_HEADER = b"SQLite format 3\x00"


def open_writable(path: str | Path) -> Database:
    """Open (creating if needed) the store for the engine, migrated and in WAL mode.

    An existing file is inspected read-only first: one that is not a store, or
    a damaged store, raises StoreCorrupt and is left exactly as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the folder for the store {path}: {exc.strerror}; "
            "choose another --db / RECO_DB"
        ) from None
    if path.exists() and path.stat().st_size > 0:
        _check_existing(path)
    conn = None
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
        db = Database(conn)
        # Only a new file takes it: segments are blobs of a few hundred KB, and
        # 16 KB pages write a full checkpoint at a million users in about half
        # the time 4 KB pages take, incremental ones alike.
        db.execute("PRAGMA page_size=16384")
        db.enable_wal()
        db.execute("PRAGMA synchronous=NORMAL")
        # After each WAL reset the file is cut back to this size, so one
        # large checkpoint does not leave a large WAL behind for good.
        db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        migrations.apply(db)
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        raise StoreCorrupt(
            f"{path} is not a usable store ({exc}); move it aside or choose another --db / RECO_DB"
        ) from None
    return db


def connect_readonly(path: str | Path) -> sqlite3.Connection:
    """Open a short-lived read-only connection; raises StoreMissing if there is no file.

    The connection is in autocommit mode, so callers group their reads with
    BEGIN/COMMIT to see one consistent checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise StoreMissing(f"no store at {path} yet; start the engine with ./run.sh")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(
            uri,
            uri=True,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute("PRAGMA query_only=ON")
    except sqlite3.DatabaseError as exc:
        raise StoreCorrupt(f"{path} is not a readable store ({exc})") from None
    return conn


def _check_existing(path: Path) -> None:
    """Raise StoreCorrupt unless ``path`` is an intact store; reads only."""
    with open(path, "rb") as file:
        header = file.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise StoreCorrupt(
            f"{path} is not an SQLite database, so not a store; move it aside or "
            "choose another --db / RECO_DB"
        )
    # Without a WAL beside it there is nothing to recover: "immutable" reads the
    # file alone and creates no -wal/-shm next to a file that may not be ours.
    has_wal = path.with_name(path.name + "-wal").exists()
    mode = "mode=ro" if has_wal else "mode=ro&immutable=1"
    conn = None
    try:
        conn = sqlite3.connect(
            f"file:{quote(str(path.resolve()))}?{mode}",
            uri=True,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
        _check_is_store(Database(conn), path)
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as exc:
        raise StoreCorrupt(
            f"{path} is not a readable store ({exc}); move it aside or "
            "choose another --db / RECO_DB"
        ) from None
    finally:
        if conn is not None:
            conn.close()
    if problems != ["ok"]:
        lines = [line for line in problems[0].splitlines() if not line.startswith("***")]
        raise StoreCorrupt(
            f"{path} is damaged ({lines[0] if lines else problems[0]}); move it aside and "
            "start a new store, or choose another --db / RECO_DB"
        )


def _check_is_store(db: Database, path: Path) -> None:
    tables = set(db.table_names())
    if not tables:
        return
    if "_sqlite_migrations" not in tables:
        raise StoreCorrupt(
            f"{path} is an SQLite file of something else, not a store; "
            "choose another --db / RECO_DB"
        )
    applied = {m.name for m in migrations.applied(db)}
    known = {m.name for m in migrations.pending(Database(memory=True))}
    if not applied:
        rows = db.execute(
            "SELECT COUNT(*) FROM _sqlite_migrations WHERE migration_set = ?", [MIGRATION_SET]
        ).fetchone()
        if not rows[0]:
            raise StoreCorrupt(
                f"{path} holds another application's data, not a store; "
                "choose another --db / RECO_DB"
            )
    if applied - known:
        raise StoreCorrupt(
            f"{path} was written by a newer version (migrations "
            f"{sorted(applied - known)}); upgrade this program"
        )
