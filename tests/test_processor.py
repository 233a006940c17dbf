"""Per-message work: test-then-learn, counters, offsets, checkpoints, drift."""

from __future__ import annotations

import numpy as np

from engine.evaluation.prequential import percentile_rank, rank_of
from tests.support.messages import message
from tests.support.processors import feed, processor


def test_rank_counts_only_candidates_the_user_has_not_seen():
    rng = np.random.default_rng(0)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    # Items 0 and 1 beat item 3, but the user already knows item 0.
    assert rank_of(scores, 3, known={0}, rng=rng) == (2, 4)
    # The true item stays a candidate even if the user saw it before.
    assert rank_of(scores, 3, known={3, 0}, rng=rng) == (2, 4)
    assert rank_of(scores, 0, known=set(), rng=rng) == (0, 5)


def test_ties_rank_like_chance_not_like_an_oracle():
    rng = np.random.default_rng(0)
    flat = np.zeros(1000)
    ranks = [rank_of(flat, 500, known=set(), rng=rng)[0] for _ in range(200)]
    assert 350 < np.mean(ranks) < 650
    assert percentile_rank(999, 1000) == 100.0


def test_recall_at_10_on_a_hand_made_stream():
    # "hit" has 12 positives, filler0..17 have 2 each, "rare" has 1.
    proc = processor(model="popular")
    feed(proc, [(f"u{i}", "hit") for i in range(12)])
    feed(proc, [(f"v{i}", f"filler{i % 18}") for i in range(36)], start_offset=12)
    feed(proc, [("w", "rare")], start_offset=48)
    before = proc.totals.popular_hits
    proc.process(message("final", "hit"), 0, 100)  # rank 0: a hit
    assert proc.totals.popular_hits == before + 1
    proc.process(message("final", "rare"), 0, 101)  # 18 fillers rank above it: a miss
    assert proc.totals.popular_hits == before + 1
    assert proc.totals.evaluated == proc.totals.positive == 51


def test_counters_and_offsets_track_every_message():
    proc = processor()
    feed(proc, [("a", "x"), ("a", "y", 1), ("b", "x")], partition=2, start_offset=10)
    proc.process(b"nope", 2, 13)
    proc.process(message("c", "z"), 0, 0)
    totals = proc.totals
    assert (totals.received, totals.accepted, totals.positive, totals.rejected) == (5, 4, 3, 1)
    assert proc.offsets == {2: 14, 0: 1}


def test_eval_fraction_samples_evaluations_but_learns_everything():
    proc = processor(eval_fraction=0.25)
    feed(proc, [(f"u{i % 50}", f"i{i % 70}") for i in range(2000)])
    assert proc.totals.positive == 2000
    assert 400 < proc.totals.evaluated < 600


def test_checkpoint_is_incremental_and_measures_drift():
    proc = processor(panel_size=3)
    feed(proc, [(f"u{i % 5}", f"i{i % 9}") for i in range(100)])
    first = proc.checkpoint(now=proc._interval_started + 2)
    assert first.new_user_ids == [f"u{i}" for i in range(5)]
    assert first.interval.interval_s == 2
    assert first.interval.update_us > 0 and first.interval.evaluate_us > 0
    feed(proc, [("u1", "i1"), ("newbie", "i3")], start_offset=100)
    second = proc.checkpoint()
    assert second.new_user_ids == ["newbie"]
    assert second.touched_users.tolist() == [1, 5]
    assert {(u, i) for u, i, _, _ in second.history_added} == {(1, 1), (5, 3)}
    assert second.interval.factor_change is not None and second.interval.factor_change > 0
    assert 0.0 <= second.interval.panel_overlap <= 1.0
    assert second.interval.received == 2


def test_history_is_bounded_per_user_and_evictions_are_reported():
    proc = processor(history_limit=3)
    feed(proc, [("u", f"i{n}") for n in range(5)])
    assert list(proc.history.items(0)) == [2, 3, 4]
    added, removed = proc.history.drain_changes()
    assert {item for _, item, _, _ in added} == {2, 3, 4}
    assert removed == [] or all(user == 0 for user, _ in removed)


def test_each_interval_counts_its_own_messages_and_they_add_up_to_the_totals():
    proc = processor()
    feed(proc, [(f"u{i % 4}", f"i{i % 6}") for i in range(30)])
    proc.process(b"nope", 0, 30)
    first = proc.checkpoint()
    feed(proc, [(f"u{i % 3}", f"i{i % 5}") for i in range(20)], start_offset=31)
    proc.process(b"{}", 0, 51)
    proc.process(b"[]", 0, 52)
    second = proc.checkpoint()
    assert (second.interval.received, second.interval.rejected) == (22, 2)
    for field in ("received", "accepted", "positive", "rejected", "evaluated"):
        assert getattr(first.interval, field) == getattr(first.totals, field)
    for field in ("received", "accepted", "positive", "rejected", "evaluated", "model_hits"):
        both = getattr(first.interval, field) + getattr(second.interval, field)
        assert both == getattr(second.totals, field)
    assert second.interval.popular_hits == (second.totals.popular_hits - first.totals.popular_hits)
