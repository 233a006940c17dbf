"""The popularity model: FluRS's baseline with an amortised O(1) item counter."""

from __future__ import annotations

import numpy as np
from flurs.baseline.popular import Popular
from flurs.data.entity import Event, Item, User

from engine.models.base import (
    CountsOnlyRows,
    DenseIndices,
    check_dense,
)
from engine.models.growable import GrowableRows

# -- popularity -------------------------------------------------------------------


class StreamingPopular(DenseIndices, CountsOnlyRows, Popular):
    """FluRS's popularity baseline with an amortised O(1) item counter (rule "popular")."""

    score_rule = "popular"

    def __init__(self):
        super().__init__()
        self._item_counts = GrowableRows(0)

    def register_item(self, item: Item) -> None:
        check_dense(item.index, self.n_item, "item")
        self._item_counts.append(0.0)
        self.n_item += 1

    def register_user(self, user: User) -> None:
        check_dense(user.index, self.n_user, "user")
        self.n_user += 1

    @property
    def freq(self) -> np.ndarray:
        return self._item_counts.view

    @freq.setter
    def freq(self, value: np.ndarray) -> None:
        if np.size(value):
            raise AttributeError("counts are set through load_state()")

    def update(self, e: Event, batch_train: bool = False) -> None:
        self.learn_one(e.user.index, e.item.index)

    def learn_one(self, u: int, i: int) -> None:
        freq = self._item_counts.flat
        freq[i] = freq[i] + 1.0

    def load_state(self, user_rows, item_rows, item_bias, state, histories) -> None:
        self._item_counts = GrowableRows.from_array(np.asarray(item_bias, dtype=np.float32))
        self.n_item, self.n_user = len(item_bias), len(user_rows)
