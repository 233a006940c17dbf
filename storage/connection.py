"""Opening the database file: read-write for the engine, read-only for everyone else."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlite_utils import Database

from storage.errors import StoreCorrupt, StoreError, StoreMissing
from storage.schema import MIGRATION_SET, migrations

# A writer waits this long for a lock held by a reader's WAL snapshot.
BUSY_TIMEOUT_MS = 5000


def open_writable(path: str | Path) -> Database:
    """Open (creating if needed) the store for the engine, migrated and in WAL mode."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the folder for the store {path}: {exc.strerror}; "
            "choose another --db / RECO_DB"
        ) from None
    existed = path.exists() and path.stat().st_size > 0
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
        db = Database(conn)
        _check_is_store(db, path, existed)
        db.enable_wal()
        db.execute("PRAGMA synchronous=NORMAL")
        migrations.apply(db)
    except sqlite3.DatabaseError as exc:
        raise StoreCorrupt(
            f"{path} is not a readable store ({exc}); move it aside or "
            "choose another --db / RECO_DB"
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


def _check_is_store(db: Database, path: Path, existed: bool) -> None:
    # Reading the schema fails fast on a file that is not SQLite at all.
    tables = set(db.table_names())
    if not existed or not tables:
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
