"""Rejected messages are counted by kind of reason, and the counts survive a restart."""

from __future__ import annotations

import sqlite3

from storage import StoreReader, StoreWriter, reason_kind
from tests.support.messages import message
from tests.support.processors import processor

BAD = [
    b"not json",
    b"{}",
    b'{"user": "u", "user": "v", "item": "i", "rating": 5, "timestamp": 1}',
    b'{"user": "u", "user": "w", "item": "i", "rating": 5, "timestamp": 1}',
    b"x" * 70_000,
    None,
]


def test_counts_by_kind_sum_to_the_total_and_come_back_after_a_restart(tmp_path):
    live = processor()
    for offset, raw in enumerate([message("u1", "i1"), *BAD]):
        live.process(raw, 0, offset)
    writer = StoreWriter(tmp_path / "reco.db")
    writer.write_checkpoint(live.checkpoint())
    checkpoint, state = writer.latest()
    writer.close()

    expected = {
        "not valid JSON": 1,
        "missing field 'user'": 1,
        "duplicate key": 2,  # the key itself is a particular: labels stay few
        "payload too large": 1,
        "empty message": 1,
    }
    assert checkpoint.rejected_by_reason == expected
    assert sum(expected.values()) == checkpoint.totals.rejected
    restored = processor()
    restored.restore(checkpoint, state)
    restored.process(b"[]", 0, 7)
    assert restored.rejected_by_reason == {**expected, "not a JSON object": 1}


def test_a_checkpoint_from_before_kinds_were_kept_gives_its_total_as_one_kind(tmp_path):
    db = tmp_path / "reco.db"
    live = processor()
    for offset, raw in enumerate(BAD):
        live.process(raw, 0, offset)
    writer = StoreWriter(db)
    writer.write_checkpoint(live.checkpoint())
    writer.close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE checkpoints SET rejected_by_reason = NULL")
    old = StoreReader(db).latest_checkpoint()
    assert old.rejected_by_reason == {"counted before reasons were kept": len(BAD)}


def test_a_reason_without_particulars_is_its_own_kind():
    assert reason_kind("empty message") == "empty message"
    assert reason_kind("duplicate key ('user')") == "duplicate key"
    assert reason_kind("unsupported compression: lz4 (batch of 3 at offsets 4-6)") == (
        "unsupported compression: lz4"
    )
