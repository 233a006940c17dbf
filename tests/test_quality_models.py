"""Every model: runs through the evaluator, survives checkpoint and restore, ranks alike from the store."""

from __future__ import annotations

import numpy as np
import pytest

from engine import settings
from engine.evaluation.prequential import TOP_N
from engine.evaluation.replay import Protocol, positives, replay
from engine.models.growable import GrowableRows
from engine.models.registry import DEFAULT_MODEL, MODELS, Recommender
from engine.processing.processor import ProcessorConfig, StreamProcessor
from engine.sources.events import parse_event
from storage import StoreReader, StoreWriter
from storage.ranking import top_n
from tests.support.messages import synthetic_messages

# userknn ranks from every neighbour's profile, which the store does not hold:
# its store lookups rank by popularity (docs/evaluation.md, "Tuning").
STORE_EXACT = [model for model in MODELS if model != "userknn"]


def test_settings_and_recommender_agree_on_models_and_default():
    assert settings.MODELS == MODELS
    assert settings.Settings().model == ProcessorConfig().model == DEFAULT_MODEL == "hybrid"


@pytest.mark.parametrize("model", MODELS)
def test_every_model_runs_through_the_evaluator(model):
    events = positives([parse_event(raw) for raw in synthetic_messages(1500)], 4.0)
    result = replay(events, model, Protocol(min_rating=4.0))
    assert result["model"] == model
    assert result["events"] > 500
    assert 0.0 <= result["recall@10"] <= 1.0
    assert 0.0 <= result["mpr"] <= 100.0


@pytest.mark.parametrize("model", MODELS)
def test_registration_does_not_copy_the_catalogue(model):
    rec = Recommender(model)
    for index in range(3000):
        rec.register_item(f"i{index}")
    rec.register_user("u")
    rec.learn_one(0, 2999)
    assert rec.scores(0).shape == (3000,)


def _trained(model: str, db_path) -> tuple[StreamProcessor, StoreWriter]:
    live = StreamProcessor(ProcessorConfig(model=model, min_rating=4.0, panel_size=5))
    writer = StoreWriter(db_path)
    messages = synthetic_messages(1200)
    for offset, raw in enumerate(messages[:700]):
        live.process(raw, 0, offset)
    writer.write_checkpoint(live.checkpoint())  # a second, incremental one follows
    for offset, raw in enumerate(messages[700:], start=700):
        live.process(raw, 0, offset)
    writer.write_checkpoint(live.checkpoint())
    return live, writer


def _top_ids(processor: StreamProcessor, user: int) -> list[str]:
    rec = processor.recommender
    known = np.fromiter(processor.history.items(user), dtype=np.int64)
    best, _ = top_n(rec.scores(user), TOP_N, exclude=known)
    return [rec.item_ids[i] for i in best.tolist()]


@pytest.mark.parametrize("model", MODELS)
def test_restore_ranks_exactly_like_the_checkpointed_engine(model, tmp_path):
    live, writer = _trained(model, tmp_path / "reco.db")
    checkpoint, state = writer.latest()
    writer.close()
    restored = StreamProcessor(ProcessorConfig(model=model, min_rating=4.0))
    restored.restore(checkpoint, state)
    assert restored.recommender.model == model
    for user in range(live.recommender.n_users):
        np.testing.assert_array_equal(
            restored.recommender.scores(user), live.recommender.scores(user)
        )


@pytest.mark.parametrize("model", STORE_EXACT)
def test_store_lookup_ranks_like_the_live_engine(model, tmp_path):
    live, writer = _trained(model, tmp_path / "reco.db")
    writer.close()
    reader = StoreReader(tmp_path / "reco.db")
    for user in range(0, live.recommender.n_users, 7):
        user_id = live.recommender.user_ids[user]
        stored = reader.recommend(user_id, n=TOP_N)
        assert not stored.fallback
        assert [item.item for item in stored.items] == _top_ids(live, user), user_id


def test_userknn_store_lookup_falls_back_to_popularity(tmp_path):
    live, writer = _trained("userknn", tmp_path / "reco.db")
    writer.close()
    user = 3
    stored = StoreReader(tmp_path / "reco.db").recommend(live.recommender.user_ids[user])
    counts = GrowableRows.from_array(live.recommender.export_items()[1]).view
    known = np.fromiter(live.history.items(user), dtype=np.int64)
    best, _ = top_n(counts, TOP_N, exclude=known)
    assert [item.item for item in stored.items] == [live.recommender.item_ids[i] for i in best]
    assert stored.fallback and stored.model == "popular"  # labelled as what it is


def test_hybrid_state_is_bounded_per_item():
    history: dict[int, dict[int, None]] = {}
    params = {"neighbours": 4, "context": 2, "profile": 4, "popularity_window": 300}
    rec = Recommender("hybrid", params, known_items=history.get)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        user = rec.register_user(f"u{rng.integers(30)}")
        item = rec.register_item(f"i{rng.integers(50)}")
        history.setdefault(user, {})
        rec.learn_one(user, item)
        history[user].pop(item, None)
        history[user][item] = None
    items, counts = rec.export_items()
    assert items.shape == (rec.n_items, 12 + 2 * 4)
    assert counts.sum() == 300  # popularity counts the latest 300 likes only
    assert items[:, :12].sum() == 2000  # the stages count every like


def test_hybrid_popularity_forgets_likes_older_than_its_window():
    history: dict[int, dict[int, None]] = {}
    rec = Recommender("hybrid", {"popularity_window": 3}, known_items=history.get)
    likes = [("a", "old"), ("b", "old"), ("c", "old"), ("d", "old")]
    likes += [("e", "new"), ("f", "new"), ("g", "new")]
    for user, item in likes:
        u, i = rec.register_user(user), rec.register_item(item)
        history.setdefault(u, {})
        rec.learn_one(u, i)
        history[u][i] = None
    _, counts = rec.export_items()
    assert counts.tolist() == [0.0, 3.0]
    # A newcomer (no items yet) is shown what is liked now, not what was liked most.
    newcomer = rec.register_user("h")
    assert np.argmax(rec.scores(newcomer)) == 1


def test_hybrid_drift_is_a_share_not_a_count(db_path):
    live = StreamProcessor(ProcessorConfig(model="hybrid", min_rating=4.0))
    messages = synthetic_messages(1500)
    for offset, raw in enumerate(messages[:750]):
        live.process(raw, 0, offset)
    live.checkpoint()
    for offset, raw in enumerate(messages[750:], start=750):
        live.process(raw, 0, offset)
    drift = live.checkpoint().interval.factor_change
    # Shares of the likes move; the raw counts doubled (a change of 1.0 and more).
    assert drift is not None and 0.0 < drift < 0.8
