"""A checkpoint of a model that has seen no events restores, for every model."""

from __future__ import annotations

import numpy as np
import pytest

from engine.settings import MODELS
from storage import StoreWriter
from tests.support.messages import message
from tests.support.processors import processor


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("before", [[], [b"not json"]], ids=["idle", "only-rejected"])
def test_a_checkpoint_of_an_empty_model_restores_and_learns_on(model, before, tmp_path):
    events = [message(u, i) for u, i in [("a", "1"), ("b", "1"), ("a", "2"), ("c", "3")]]
    live, restored = processor(model=model, min_rating=4.0), processor(model=model, min_rating=4.0)
    for offset, payload in enumerate(before):
        live.process(payload, 0, offset)
    writer = StoreWriter(tmp_path / "reco.db")
    writer.write_checkpoint(live.checkpoint())
    writer.write_checkpoint(live.checkpoint())
    checkpoint, state = writer.latest()
    restored.restore(checkpoint, state)
    assert restored.totals == live.totals
    for offset, payload in enumerate(events, start=len(before)):
        live.process(payload, 0, offset)
        restored.process(payload, 0, offset)
    writer.write_checkpoint(restored.checkpoint())
    assert restored.totals == live.totals
    for user in range(live.recommender.n_users):
        np.testing.assert_array_equal(
            restored.recommender.scores(user), live.recommender.scores(user)
        )
    writer.close()
