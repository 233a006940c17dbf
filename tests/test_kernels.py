"""The compiled hot path counts exactly like the numpy reference it replaces."""

from __future__ import annotations

import numpy as np
import pytest

from engine.evaluation.prequential import Draws, rank_of
from engine.kernels import count_rank, top_n
from engine.models.baseline import PopularityCounts
from engine.models.registry import Recommender
from engine.processing import processor as processor_module
from engine.processing.processor import ProcessorConfig, StreamProcessor
from storage import ranking
from storage.ranking import score_items
from tests.support.messages import synthetic_messages


class _FixedDraws:
    """A generator that always draws 0, so rank_of returns its ``greater`` count."""

    def integers(self, high: int) -> int:
        return 0


def _trained(model: str = "hybrid", events: int = 3000) -> StreamProcessor:
    processor = StreamProcessor(ProcessorConfig(model=model, min_rating=4.0, panel_size=0))
    for offset, raw in enumerate(synthetic_messages(events)):
        processor.process(raw, 0, offset)
    return processor


def _reference(scores: np.ndarray, item: int, known: np.ndarray) -> tuple[int, int, int]:
    """(greater, ties, candidates) the slow way: rank_of with no random draw, plus ties."""
    greater, candidates = rank_of(scores, item, set(known.tolist()), _FixedDraws())
    level = np.flatnonzero(scores == scores[item])
    ties = len(set(level.tolist()) - set(known.tolist()) - {item})
    return greater, ties, candidates


def test_hybrid_ranks_like_its_score_vector():
    processor = _trained()
    rec = processor.recommender
    rng = np.random.default_rng(0)
    for user in range(0, rec.n_users, 5):
        known = np.fromiter(processor.history.items(user), dtype=np.int64)
        for item in rng.integers(0, rec.n_items, 4).tolist() + known[:2].tolist():
            scores = rec.scores(user)
            assert rec.rank_counts(user, item, known) == _reference(scores, item, known)
            # ... and like the store's rule on the exported rows, to the bit.
            np.testing.assert_array_equal(scores, score_items(*rec.ranking_inputs(user)))


def test_count_rank_and_popularity_match_the_reference():
    processor = _trained("popular", 1500)
    counts = processor.popularity.view
    rebuilt = PopularityCounts.from_array(counts)
    rng = np.random.default_rng(1)
    for user in range(processor.recommender.n_users):
        known = np.fromiter(processor.history.items(user), dtype=np.int64)
        item = int(rng.integers(len(counts)))
        greater, ties, candidates = _reference(counts.astype(np.float64), item, known)
        assert count_rank(counts, item, known) == (greater, ties, candidates)
        assert processor.popularity.rank_counts(item, known) == (greater, ties)
        assert rebuilt.rank_counts(item, known) == (greater, ties)


@pytest.mark.parametrize("seed", [0, 42])
def test_draws_are_numpys_draws_and_state(seed):
    numpy_rng, draws = np.random.default_rng(seed), Draws(seed)
    highs = np.random.default_rng(7).integers(2, 5000, 3000).tolist() + [2**32, 2**31 + 1, 3]
    for high in highs:
        assert draws.integers(high) == int(numpy_rng.integers(high))
        if high % 7 == 0:  # uniform draws in between take whole outputs
            assert draws.random() == numpy_rng.random()
    assert draws.state == numpy_rng.bit_generator.state
    # A state saved mid-stream continues identically in either.
    restored = Draws(0)
    restored.state = draws.state
    numpy_rng.bit_generator.state = draws.state
    assert [restored.integers(10) for _ in range(9)] == numpy_rng.integers(10, size=9).tolist()


@pytest.mark.parametrize("eval_fraction", [1.0, 0.3])
def test_one_compiled_call_per_event_learns_and_ranks_like_the_timed_two_steps(
    monkeypatch, eval_fraction
):
    def run() -> StreamProcessor:
        processor = StreamProcessor(
            ProcessorConfig(
                min_rating=4.0, panel_size=0, eval_fraction=eval_fraction, history_limit=30
            )
        )
        for offset, raw in enumerate(synthetic_messages(4000)):
            processor.process(raw, 0, offset)
        return processor

    fused = run()
    monkeypatch.setattr(processor_module, "TIMED_EVERY", 1)  # every event in two timed steps
    stepwise = run()
    assert fused.timings.updates < stepwise.timings.updates == stepwise.totals.positive
    assert fused.totals == stepwise.totals
    assert fused.totals.evaluated > 0
    assert fused.percentile_sum == stepwise.percentile_sum
    assert fused._rng.state == stepwise._rng.state
    a, b = fused.recommender, stepwise.recommender
    np.testing.assert_array_equal(a.export_items()[0], b.export_items()[0])
    users = np.arange(a.n_users)
    np.testing.assert_array_equal(a.user_factors(users), b.user_factors(users))
    np.testing.assert_array_equal(a.drain_touched_items(), b.drain_touched_items())


@pytest.mark.parametrize("eval_fraction", [1.0, 0.3])
def test_runs_of_any_length_learn_and_rank_like_one_message_at_a_time(eval_fraction):
    """The compiled runs (HybridRecommender.observe_run) change nothing but the speed.

    Runs hold new users and items (registered before the run is learned),
    re-interactions, evictions (a history bound of 8), bad messages and the
    timed events that split a run; every evaluated event's counts, the
    baseline's included, must be those of one message at a time.
    """
    messages = synthetic_messages(3000)
    for position in range(5, len(messages), 97):
        messages[position] = b"not json"
    messages += messages[1000:1300]  # the same users liking the same items again

    def run(run_lengths: np.ndarray | None) -> tuple[StreamProcessor, list, list]:
        processor = StreamProcessor(
            ProcessorConfig(
                min_rating=4.0, panel_size=3, eval_fraction=eval_fraction, history_limit=8
            )
        )
        counted, checkpoints = [], []
        count = processor._count_ranks
        processor._count_ranks = lambda *ranks: (counted.append(ranks), count(*ranks))
        triples = [(raw, 0, offset) for offset, raw in enumerate(messages)]
        if run_lengths is None:
            for triple in triples:
                processor.process(*triple)
        else:
            cuts = np.cumsum(run_lengths)
            for start, end in zip([0, *cuts[:-1].tolist()], cuts.tolist(), strict=True):
                processor.process_run(triples[start:end])
                if start // 1000 != end // 1000:
                    write = processor.checkpoint()
                    checkpoints.append((write.touched_users.tolist(), write.history_added))
        return processor, counted, checkpoints

    lengths = np.random.default_rng(5).integers(1, 60, len(messages))
    one, one_counted, _ = run(None)
    runs, runs_counted, runs_checkpoints = run(lengths)
    assert runs_counted == one_counted and len(one_counted) == one.totals.evaluated > 100
    assert runs.totals == one.totals and runs.percentile_sum == one.percentile_sum
    assert runs._rng.state == one._rng.state
    a, b = runs.recommender, one.recommender
    np.testing.assert_array_equal(a.export_items()[0], b.export_items()[0])
    users = np.arange(a.n_users)
    np.testing.assert_array_equal(a.user_factors(users), b.user_factors(users))
    np.testing.assert_array_equal(runs.popularity.view, one.popularity.view)
    for user in range(a.n_users):
        assert runs.history.items(user).tolist() == one.history.items(user).tolist()
    # Checkpoints between runs changed nothing, and saw every user's history change.
    touched = {user for users, _ in runs_checkpoints for user in users}
    touched |= set(runs.history.drain_touched().tolist())
    assert len(runs_checkpoints) >= 3 and touched == set(range(a.n_users))


def test_counts_beyond_the_table_of_logarithms_rank_exactly():
    processor = _trained()
    rec = processor.recommender
    rows, bias = rec.export_items()
    counts = rows[:, -rec.params["neighbours"] :]
    counts[counts > 0] += 70_000.5  # neither whole nor within the table
    restored = Recommender("hybrid", known_items=processor.history.items)
    users = np.arange(rec.n_users)
    restored.load(rec.user_ids, rec.item_ids, rec.user_factors(users), rows, bias)
    rng = np.random.default_rng(2)
    for user in range(0, rec.n_users, 7):
        known = np.fromiter(processor.history.items(user), dtype=np.int64)
        scores = restored.scores(user)
        for item in rng.integers(0, rec.n_items, 3).tolist():
            assert restored.rank_counts(user, item, known) == _reference(scores, item, known)
    assert not np.array_equal(scores, rec.scores(user))  # the large counts did count


@pytest.mark.parametrize("seed", range(6))
def test_compiled_top_n_gives_the_store_top_n_answer(seed):
    # Few distinct values make many ties; the order must still be the store's.
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=3000).astype(np.float64)
    scores[rng.choice(3000, 40, replace=False)] = np.inf
    exclude = rng.choice(3000, 500, replace=False)
    for n in (1, 10, 45, 3000):
        for excluded in (None, exclude):
            got = top_n(scores, n, exclude=excluded)
            want = ranking.top_n(scores, n, exclude=excluded)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])


def test_compiled_top_n_with_fewer_candidates_than_asked():
    scores = np.array([0.5, -np.inf, 2.0, 0.5])
    best, values = top_n(scores, 10, exclude=np.array([2]))
    assert best.tolist() == [0, 3]
    assert values.tolist() == [0.5, 0.5]
    assert top_n(scores, 0)[0].size == 0
