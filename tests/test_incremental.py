"""Checkpoints write only what changed, yet restore and rank exactly like full ones."""

from __future__ import annotations

import numpy as np
import pytest

from engine.processor import ProcessorConfig, StreamProcessor
from storage import StoreReader, StoreWriter
from storage.codec import encode_array
from tests.test_quality_evaluator import synthetic_messages

STEPS = ((0, 700), (700, 1150), (1150, 1500))


def _processor(model: str) -> StreamProcessor:
    return StreamProcessor(ProcessorConfig(model=model, min_rating=4.0, panel_size=5))


@pytest.mark.parametrize("model", ["hybrid", "mf", "bprmf", "popular"])
def test_incremental_checkpoints_restore_like_full_ones(model, tmp_path):
    messages = synthetic_messages(1500)
    live = {"incremental": _processor(model), "full": _processor(model)}
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
        restored[name] = _processor(model)
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


def test_a_store_from_before_item_rows_is_read_and_then_migrated(tmp_path):
    db = tmp_path / "reco.db"
    processor = _processor("hybrid")
    for offset, raw in enumerate(synthetic_messages(800)):
        processor.process(raw, 0, offset)
    writer = StoreWriter(db)
    checkpoint_id = writer.write_checkpoint(processor.checkpoint())
    _, state = writer.latest()
    users = processor.recommender.user_ids[::11]
    expected = [StoreReader(db).recommend(user).items for user in users]
    # What the engine wrote before migration 0005: a whole-catalogue snapshot.
    writer.db.execute(
        "INSERT INTO model_snapshots VALUES (?, ?, ?, ?)",
        [
            checkpoint_id,
            encode_array(state.item_factors),
            encode_array(state.item_bias),
            encode_array(state.item_counts),
        ],
    )
    writer.db.execute("DROP TABLE item_rows")
    writer.db.execute("DELETE FROM _sqlite_migrations WHERE name = '0005_item_rows'")
    writer.db.conn.commit()
    writer.close()
    assert [StoreReader(db).recommend(user).items for user in users] == expected

    migrated = StoreWriter(db)
    assert migrated.db.execute("SELECT COUNT(*) FROM item_rows").fetchone()[0] == len(
        state.item_ids
    )
    assert migrated.db.execute("SELECT COUNT(*) FROM model_snapshots").fetchone()[0] == 0
    migrated.close()
    assert [StoreReader(db).recommend(user).items for user in users] == expected
