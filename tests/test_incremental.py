"""Checkpoints write only what changed, yet restore and rank exactly like full ones."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from storage import StoreReader, StoreWriter
from storage import _histories as histories
from storage._codec import encode_array, encode_rows
from storage._session_rows import encode_session_rows
from tests.support import processors
from tests.support.messages import synthetic_messages

STEPS = ((0, 700), (700, 1150), (1150, 1500))


@pytest.mark.parametrize("model", ["hybrid", "mf", "bprmf", "popular"])
def test_incremental_checkpoints_restore_like_full_ones(model, tmp_path):
    messages = synthetic_messages(1500)
    live = {
        "incremental": processors.processor(model=model, min_rating=4.0),
        "full": processors.processor(model=model, min_rating=4.0),
    }
    writers = {name: StoreWriter(tmp_path / f"{name}.db") for name in live}
    writes = {}
    for start, end in STEPS:
        for offset in range(start, end):
            for processor in live.values():
                processor.process(messages[offset], 0, offset)
        for name, processor in live.items():
            writes[name] = processor.checkpoint(full=name == "full")
            writers[name].write_checkpoint(writes[name])
    n_items = live["full"].recommender.n_items
    assert len(writes["full"].item_bias) == n_items
    assert 0 < len(writes["incremental"].touched_items) < n_items
    assert len(writes["incremental"].touched_users) < live["full"].recommender.n_users

    restored = {}
    for name, writer in writers.items():
        checkpoint, state = writer.latest()
        writer.close()
        restored[name] = processors.processor(model=model, min_rating=4.0)
        restored[name].restore(checkpoint, state)
    reference = live["full"].recommender
    for user in range(reference.n_users):
        expected = reference.scores(user)
        for processor in restored.values():
            np.testing.assert_array_equal(processor.recommender.scores(user), expected)
    readers = [StoreReader(tmp_path / f"{name}.db") for name in live]
    for user_id in reference.user_ids[::9]:
        first, second = (reader.recommend(user_id, n=10) for reader in readers)
        assert [item.item for item in first.items] == [item.item for item in second.items]


def _as_old_layout(db, state, checkpoint_id: int, snapshot: bool) -> None:
    """Turn a store back into what engines before row segments wrote: a row per user,
    per history entry and per item (0005), or before that (``snapshot``) a
    whole-catalogue snapshot."""
    encode = encode_session_rows if state.score_rule == "session" else encode_rows
    conn = sqlite3.connect(db)
    with conn:
        records = histories.read_all(conn)
        conn.execute("DROP TABLE history_segments")
        conn.execute(
            "CREATE TABLE history (user_idx INTEGER NOT NULL, item_idx INTEGER NOT NULL, "
            "time REAL NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (user_idx, item_idx)) "
            "WITHOUT ROWID"
        )
        conn.executemany("INSERT INTO history VALUES (?, ?, ?, ?)", records.tolist())
        conn.execute("DROP TABLE user_segments")
        conn.execute("DROP TABLE item_segments")
        conn.execute("ALTER TABLE users RENAME TO new_users")
        conn.execute(
            "CREATE TABLE users (idx INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
            "factors BLOB NOT NULL)"
        )
        conn.executemany(
            "INSERT INTO users VALUES (?, ?, ?)",
            zip(
                range(len(state.user_ids)),
                state.user_ids,
                encode(state.user_factors),
                strict=True,
            ),
        )
        conn.execute("DROP TABLE new_users")
        gone = ["0011_row_segments"]
        if snapshot:
            conn.execute(
                "INSERT INTO model_snapshots VALUES (?, ?, ?, ?)",
                [
                    checkpoint_id,
                    encode_array(state.item_factors),
                    encode_array(state.item_bias),
                    encode_array(state.item_counts),
                ],
            )
            gone.append("0005_item_rows")
        else:
            conn.execute(
                "CREATE TABLE item_rows (idx INTEGER PRIMARY KEY, factors BLOB NOT NULL, "
                "bias REAL NOT NULL, count REAL NOT NULL, checkpoint_id INTEGER NOT NULL)"
            )
            conn.executemany(
                "INSERT INTO item_rows VALUES (?, ?, ?, ?, ?)",
                zip(
                    range(len(state.item_ids)),
                    encode(state.item_factors),
                    state.item_bias.tolist(),
                    state.item_counts.tolist(),
                    [checkpoint_id] * len(state.item_ids),
                    strict=True,
                ),
            )
        conn.executemany("DELETE FROM _sqlite_migrations WHERE name = ?", [[g] for g in gone])
    conn.close()


@pytest.mark.parametrize("layout", ["item rows", "snapshot"])
def test_a_store_from_before_row_segments_is_read_and_then_migrated(layout, tmp_path):
    db = tmp_path / "reco.db"
    processor = processors.processor(model="hybrid", min_rating=4.0)
    for offset, raw in enumerate(synthetic_messages(800)):
        processor.process(raw, 0, offset)
    writer = StoreWriter(db)
    checkpoint_id = writer.write_checkpoint(processor.checkpoint())
    _, state = writer.latest()
    writer.close()
    users = processor.recommender.user_ids[::11]
    expected = [StoreReader(db).recommend(user).items for user in users]
    expected_history = [StoreReader(db).history(user) for user in users]
    _as_old_layout(db, state, checkpoint_id, snapshot=layout == "snapshot")
    assert [StoreReader(db).recommend(user).items for user in users] == expected
    assert [StoreReader(db).history(user) for user in users] == expected_history

    migrated = StoreWriter(db)
    assert migrated.db.execute("SELECT SUM(n) FROM item_segments").fetchone()[0] == len(
        state.item_ids
    )
    assert migrated.db.execute("SELECT SUM(n) FROM user_segments").fetchone()[0] == len(
        state.user_ids
    )
    assert migrated.db.execute("SELECT COUNT(*) FROM model_snapshots").fetchone()[0] == 0
    _, after = migrated.latest()
    migrated.close()
    assert after.user_ids == state.user_ids and after.item_ids == state.item_ids
    assert after.histories == state.histories
    for name in ("user_factors", "item_factors", "item_bias", "item_counts"):
        np.testing.assert_array_equal(getattr(after, name), getattr(state, name))
    assert [StoreReader(db).recommend(user).items for user in users] == expected
    assert [StoreReader(db).history(user) for user in users] == expected_history
