"""The store's schema, as numbered migrations applied in order at open."""

from __future__ import annotations

import itertools

import numpy as np
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from storage import _histories as histories
from storage._codec import decode_array, encode_rows
from storage._segments import CHUNK

MIGRATION_SET = "reco-store"

migrations = Migrations(MIGRATION_SET)


@migrations(name="0001_initial")
def initial(db: Database) -> None:
    _run_statements(
        db,
        """
        -- One row per checkpoint: the interval's metrics, the running totals and
        -- the consumed offsets, which make a restart resume after the last event.
        CREATE TABLE checkpoints (
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            topic TEXT NOT NULL,
            offsets TEXT NOT NULL,
            model TEXT NOT NULL,
            params TEXT NOT NULL,
            score_rule TEXT NOT NULL,
            users INTEGER NOT NULL,
            items INTEGER NOT NULL,
            interval_s REAL NOT NULL,
            received INTEGER NOT NULL,
            accepted INTEGER NOT NULL,
            positive INTEGER NOT NULL,
            rejected INTEGER NOT NULL,
            evaluated INTEGER NOT NULL,
            model_hits INTEGER NOT NULL,
            popular_hits INTEGER NOT NULL,
            update_us REAL,
            evaluate_us REAL,
            lag INTEGER,
            factor_change REAL,
            panel_overlap REAL,
            total_received INTEGER NOT NULL,
            total_accepted INTEGER NOT NULL,
            total_positive INTEGER NOT NULL,
            total_rejected INTEGER NOT NULL,
            total_evaluated INTEGER NOT NULL,
            total_model_hits INTEGER NOT NULL,
            total_popular_hits INTEGER NOT NULL
        );
        CREATE INDEX checkpoints_time ON checkpoints(time);

        -- Whole-catalogue model state per checkpoint (np.save bytes); the last
        -- few are kept.
        CREATE TABLE model_snapshots (
            checkpoint_id INTEGER PRIMARY KEY,
            item_factors BLOB NOT NULL,
            item_bias BLOB NOT NULL,
            item_counts BLOB NOT NULL
        );

        -- Dense index <-> external id; a user's factors are rewritten only when
        -- the user was touched (raw little-endian float32, k values).
        CREATE TABLE users (
            idx INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            factors BLOB NOT NULL
        );
        CREATE TABLE items (
            idx INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE
        );
        -- Display names come from the source (producer), keyed by external id,
        -- so they can arrive before the engine has seen the item.
        CREATE TABLE item_names (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL
        );

        -- Each user's most recent positive items (bounded per user). seq is the
        -- engine's event sequence number: it orders events with equal times.
        CREATE TABLE history (
            user_idx INTEGER NOT NULL,
            item_idx INTEGER NOT NULL,
            time REAL NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (user_idx, item_idx)
        ) WITHOUT ROWID;
        CREATE INDEX history_user_seq ON history(user_idx, seq);

        CREATE TABLE rejected_events (
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            reason TEXT NOT NULL,
            partition INTEGER NOT NULL,
            "offset" INTEGER NOT NULL,
            payload TEXT NOT NULL
        );
        CREATE INDEX rejected_events_time ON rejected_events(time);
        """,
    )


@migrations(name="0002_broker_status_and_draws")
def broker_status_and_draws(db: Database) -> None:
    _run_statements(
        db,
        """
        -- Whether the engine could reach the broker when it wrote the checkpoint,
        -- and since when it could not (Unix seconds; NULL while it can). Rows
        -- written before this migration hold NULL in both: unknown.
        ALTER TABLE checkpoints ADD COLUMN broker_connected INTEGER;
        ALTER TABLE checkpoints ADD COLUMN stalled_since REAL;
        -- The state of the engine's random draws (evaluation tie-breaks and
        -- sampling) as JSON, so a restart continues them exactly.
        ALTER TABLE checkpoints ADD COLUMN rng_state TEXT;
        """,
    )


@migrations(name="0005_item_rows")
def item_rows(db: Database) -> None:
    """Item state one row per item, so a checkpoint rewrites only the items that changed."""
    _run_statements(
        db,
        """
        -- The model's row for each item (raw little-endian float32), its bias,
        -- and its positive events (the popularity baseline). checkpoint_id is
        -- the checkpoint that last wrote the row: a reader that cached the
        -- rows of an earlier checkpoint reads only the newer ones.
        CREATE TABLE item_rows (
            idx INTEGER PRIMARY KEY,
            factors BLOB NOT NULL,
            bias REAL NOT NULL,
            count REAL NOT NULL,
            checkpoint_id INTEGER NOT NULL
        );
        CREATE INDEX item_rows_checkpoint ON item_rows(checkpoint_id);
        """,
    )
    # The latest whole-catalogue snapshot becomes the rows; snapshots are no
    # longer written, so the old ones go.
    latest = db.execute(
        "SELECT checkpoint_id, item_factors, item_bias, item_counts FROM model_snapshots "
        "ORDER BY checkpoint_id DESC LIMIT 1"
    ).fetchone()
    if latest is not None:
        checkpoint_id, factors, bias, counts = latest
        factors, bias, counts = (decode_array(blob) for blob in (factors, bias, counts))
        db.conn.executemany(
            "INSERT INTO item_rows (idx, factors, bias, count, checkpoint_id) VALUES (?, ?, ?, ?, ?)",
            zip(
                range(len(bias)),
                encode_rows(factors),
                bias.tolist(),
                counts.tolist(),
                itertools.repeat(checkpoint_id),
                strict=False,
            ),
        )
    db.execute("DELETE FROM model_snapshots")


def _run_statements(db: Database, script: str) -> None:
    # executescript() would COMMIT the migration's transaction first, so each
    # statement runs on its own inside it. Comments go first: they may hold ';'.
    code = "\n".join(line for line in script.splitlines() if not line.strip().startswith("--"))
    for statement in code.split(";"):
        if statement.strip():
            db.execute(statement)


# Migrations from here on are registered after every one above, whatever
# other branches insert there: sqlite-utils applies them in registration order.


@migrations(name="0010_online_metrics")
def online_metrics(db: Database) -> None:
    _run_statements(
        db,
        """
        -- Per checkpoint interval and A/B variant: recommendation lists served
        -- by the live API (impressions) and how many of them a later positive
        -- event of the same user took an item from (clicks). Pruned with the
        -- checkpoints.
        CREATE TABLE online_metrics (
            checkpoint_id INTEGER NOT NULL,
            time REAL NOT NULL,
            interval_s REAL NOT NULL,
            variant TEXT NOT NULL,
            impressions INTEGER NOT NULL,
            clicks INTEGER NOT NULL,
            PRIMARY KEY (checkpoint_id, variant)
        ) WITHOUT ROWID;
        CREATE INDEX online_metrics_time ON online_metrics(time);
        """,
    )


@migrations(name="0011_row_segments")
def row_segments(db: Database) -> None:
    """User and item rows as packed segments per chunk of indices (storage._segments)."""
    _run_statements(
        db,
        """
        -- The rows of indices chunk * CHUNK .. (chunk + 1) * CHUNK - 1 in a base
        -- (base = 1) and the deltas written after it; a later segment's row
        -- wins. n is the number of rows; indices (int32), ends (uint32, byte
        -- end of each row in data) and data are little-endian arrays;
        -- scalars holds each item's bias and count (float32). checkpoint_id
        -- is the checkpoint that wrote the segment.
        CREATE TABLE user_segments (
            id INTEGER PRIMARY KEY,
            chunk INTEGER NOT NULL,
            checkpoint_id INTEGER NOT NULL,
            base INTEGER NOT NULL,
            n INTEGER NOT NULL,
            indices BLOB NOT NULL,
            ends BLOB NOT NULL,
            data BLOB NOT NULL,
            scalars BLOB
        );
        CREATE INDEX user_segments_chunk ON user_segments(chunk, id, base, n);
        CREATE TABLE item_segments (
            id INTEGER PRIMARY KEY,
            chunk INTEGER NOT NULL,
            checkpoint_id INTEGER NOT NULL,
            base INTEGER NOT NULL,
            n INTEGER NOT NULL,
            indices BLOB NOT NULL,
            ends BLOB NOT NULL,
            data BLOB NOT NULL,
            scalars BLOB
        );
        CREATE INDEX item_segments_chunk ON item_segments(chunk, id, base, n);
        CREATE INDEX item_segments_checkpoint ON item_segments(checkpoint_id);
        -- Users' histories per chunk of users, alike: added holds records
        -- (user int32, item int32, time float64, seq int64), removed (user,
        -- item) pairs the per-user bound evicted (storage._histories).
        CREATE TABLE history_segments (
            id INTEGER PRIMARY KEY,
            chunk INTEGER NOT NULL,
            checkpoint_id INTEGER NOT NULL,
            base INTEGER NOT NULL,
            n INTEGER NOT NULL,
            added BLOB NOT NULL,
            removed BLOB NOT NULL
        );
        CREATE INDEX history_segments_chunk ON history_segments(chunk, id, base, n);
        """,
    )
    # The stored rows move as they are: a segment's data is its rows' blobs
    # back to back, whatever the score rule.
    latest = db.execute("SELECT MAX(id) FROM checkpoints").fetchone()[0] or 0
    _rows_to_segments(
        db,
        "user_segments",
        "SELECT idx, factors, NULL, NULL, ? FROM users ORDER BY idx",
        [latest],
    )
    _rows_to_segments(
        db,
        "item_segments",
        "SELECT idx, factors, bias, count, checkpoint_id FROM item_rows ORDER BY idx",
        [],
    )
    for chunk, group in itertools.groupby(
        db.execute("SELECT user_idx, item_idx, time, seq FROM history ORDER BY user_idx, seq"),
        key=lambda r: r[0] // CHUNK,
    ):
        added = histories.records(list(group))
        db.execute(
            "INSERT INTO history_segments (chunk, checkpoint_id, base, n, added, removed) "
            "VALUES (?, ?, 1, ?, ?, ?)",
            [chunk, latest, len(added), added.tobytes(), b""],
        )
    _run_statements(
        db,
        """
        DROP TABLE history;
        CREATE TABLE users_ids (
            idx INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE
        );
        INSERT INTO users_ids (idx, id) SELECT idx, id FROM users ORDER BY idx;
        DROP TABLE users;
        ALTER TABLE users_ids RENAME TO users;
        DROP TABLE item_rows
        """,
    )


def _rows_to_segments(db: Database, table: str, query: str, params: list) -> None:
    """Copy one-row-per-index rows into one base segment per chunk."""
    for chunk, group in itertools.groupby(db.execute(query, params), key=lambda r: r[0] // CHUNK):
        batch = list(group)
        scalars = None
        if batch[0][2] is not None:
            scalars = np.array([(r[2], r[3]) for r in batch], dtype="<f4").tobytes()
        db.execute(
            f"INSERT INTO {table} (chunk, checkpoint_id, base, n, indices, ends, data, scalars) "  # noqa: S608
            "VALUES (?, ?, 1, ?, ?, ?, ?, ?)",
            [
                chunk,
                max(r[4] for r in batch),
                len(batch),
                np.array([r[0] for r in batch], dtype="<i4").tobytes(),
                np.cumsum([len(r[1]) for r in batch], dtype=np.int64).astype("<u4").tobytes(),
                b"".join(r[1] for r in batch),
                scalars,
            ],
        )


@migrations(name="0012_rejected_by_reason")
def rejected_by_reason(db: Database) -> None:
    _run_statements(
        db,
        """
        -- Rejected messages since the store was created, per kind of reason
        -- (storage.records.reason_kind), as a JSON object; NULL in checkpoints
        -- written before, which counted only the total.
        ALTER TABLE checkpoints ADD COLUMN rejected_by_reason TEXT;
        """,
    )


@migrations(name="0013_checkpoint_partitions")
def checkpoint_partitions(db: Database) -> None:
    _run_statements(
        db,
        """
        -- Who wrote the checkpoint: "host:port" of the worker's API; NULL when
        -- not known (written offline, or before this migration).
        ALTER TABLE checkpoints ADD COLUMN worker TEXT;
        -- Where the worker is in the deployment's shared item statistics
        -- (CheckpointWrite.shared), as JSON; NULL for a worker not sharing.
        ALTER TABLE checkpoints ADD COLUMN shared TEXT;
        -- The partitions of the events topic the worker owned at each
        -- checkpoint: the next offset to process, the partition's own counts
        -- (they move with the partition from worker to worker) and its lag
        -- (NULL where the broker did not say). time is the checkpoint's, for
        -- pruning with the checkpoints as online_metrics is.
        CREATE TABLE checkpoint_partitions (
            checkpoint_id INTEGER NOT NULL,
            partition INTEGER NOT NULL,
            time REAL NOT NULL,
            "offset" INTEGER NOT NULL,
            received INTEGER NOT NULL,
            accepted INTEGER NOT NULL,
            positive INTEGER NOT NULL,
            rejected INTEGER NOT NULL,
            evaluated INTEGER NOT NULL,
            model_hits INTEGER NOT NULL,
            popular_hits INTEGER NOT NULL,
            lag INTEGER,
            PRIMARY KEY (checkpoint_id, partition)
        ) WITHOUT ROWID;
        CREATE INDEX checkpoint_partitions_time ON checkpoint_partitions(time);
        -- A partition's most advanced state is a seek: (partition, offset DESC).
        CREATE INDEX checkpoint_partitions_offset
            ON checkpoint_partitions(partition, "offset", checkpoint_id);
        """,
    )
