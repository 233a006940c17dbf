"""The FluRS wrapper: ids in any order, growth without full copies, exact export/import."""

from __future__ import annotations

import numpy as np
import pytest

from engine.models.base import Model
from engine.models.growable import GrowableRows
from engine.models.registry import MODELS, Recommender
from tests.support.processors import feed, processor


@pytest.mark.parametrize("model", ["mf", "bprmf", "popular"])
def test_unseen_string_ids_register_in_any_order(model):
    rec = Recommender(model, seed=1)
    pairs = [("zoe", "42"), ("7", "tt9"), ("zoe", "x"), ("ünïcode", "42"), ("7", "x")]
    for user, item in pairs:
        rec.learn_one(rec.register_user(user), rec.register_item(item))
    assert rec.user_ids == ["zoe", "7", "ünïcode"]
    assert rec.item_ids == ["42", "tt9", "x"]
    assert rec.scores(rec.user_index("7")).shape == (3,)


def test_registration_grows_in_place_without_copying_per_id():
    rows = GrowableRows(4, capacity=2)
    buffers = [rows._buffer]  # held, so that a freed buffer's id cannot come back
    for i in range(1000):
        rows.append(np.full(4, i, dtype=np.float32))
        if rows._buffer is not buffers[-1]:
            buffers.append(rows._buffer)
    # Doubling from 2 to 1024 takes 9 new buffers, not one per appended row.
    assert [len(b) for b in buffers] == [2 << n for n in range(10)]
    assert rows.view.shape == (1000, 4)
    assert rows.view[999, 0] == 999


def test_mf_learns_to_score_a_positive_item_higher():
    rec = Recommender("mf", seed=3)
    user = rec.register_user("u")
    liked, other = rec.register_item("liked"), rec.register_item("other")
    before = rec.scores(user)[liked]
    for _ in range(50):
        rec.learn_one(user, liked)
    after = rec.scores(user)
    assert after[liked] > before
    assert after[liked] > after[other]


def test_unknown_model_name_is_refused():
    with pytest.raises(ValueError, match="unknown model 'magic'"):
        Recommender("magic")


@pytest.mark.parametrize("model", ["mf", "bprmf", "popular"])
def test_checkpoint_restore_gives_identical_rankings(model):
    events = [(f"u{i % 13}", f"i{(i * 7) % 29}") for i in range(400)]
    original = processor(model=model)
    feed(original, events)
    write = original.checkpoint()

    from storage.records import Checkpoint, ModelState

    state = ModelState(
        model=write.model,
        params=write.params,
        score_rule=write.score_rule,
        user_ids=original.recommender.user_ids,
        item_ids=original.recommender.item_ids,
        user_factors=original.recommender.user_factors(np.arange(original.recommender.n_users)),
        item_factors=write.item_factors,
        item_bias=write.item_bias,
        item_counts=write.item_counts,
        histories={u: list(original.history.items(u)) for u in range(original.recommender.n_users)},
    )
    checkpoint = Checkpoint(
        id=1,
        time=write.time,
        model=write.model,
        params=write.params,
        topic=write.topic,
        offsets=write.offsets,
        totals=write.totals,
        interval=write.interval,
        users=write.n_users,
        items=write.n_items,
    )
    restored = processor(model=model)
    restored.restore(checkpoint, state)
    for user in range(original.recommender.n_users):
        np.testing.assert_array_equal(
            restored.recommender.scores(user), original.recommender.scores(user)
        )
    assert restored.offsets == original.offsets
    assert restored.totals == original.totals


def test_hybrid_rows_of_a_few_users_equal_their_rows_in_a_full_export():
    # A checkpoint exports only the touched users, by a cheaper path than all of them.
    proc = processor(model="hybrid")
    feed(proc, [(f"u{i % 40}", f"i{(i * 7) % 31}") for i in range(600)])
    rec = proc.recommender
    everyone = rec.user_factors(np.arange(rec.n_users))
    few = np.array([3, 17, 0, 39], dtype=np.int64)
    assert 4 * len(few) < rec.n_users  # the subset path, not the whole-list one
    np.testing.assert_array_equal(rec.user_factors(few), everyone[few])


@pytest.mark.parametrize("model", MODELS)
def test_every_model_is_what_the_registry_drives(model):
    rec = Recommender(model, seed=1)
    assert isinstance(rec._model, Model)
    user, item = rec.register_user("u"), rec.register_item("i")
    rec.learn_one(user, item)
    assert rec.scores(user).shape == (1,)
