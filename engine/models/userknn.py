"""User-based k nearest neighbours, incremental, for positive-only feedback."""

from __future__ import annotations

import numpy as np
from flurs.data.entity import Event, Item, User
from flurs.recommender.user_knn import UserKNNRecommender

from engine.models.base import (
    CountsOnlyRows,
    DenseIndices,
    check_dense,
)
from engine.models.growable import GrowableRows

# -- user-based k nearest neighbours ----------------------------------------------------


class StreamingUserKNN(DenseIndices, CountsOnlyRows, UserKNNRecommender):
    """Incremental user-based kNN (Papagelis et al. 2005) for positive-only feedback.

    FluRS's UserKNN keeps dense user x item and user x user matrices, grows
    them with np.concatenate and loops over every user and item in Python on
    each update; and with positive-only events (every value 1) its
    mean-centred Pearson similarity is 0/0 for every pair, so it ranks at
    random. This keeps the algorithm -- similarities updated incrementally
    per event, the ``k`` most similar users vote -- with cosine similarity on
    binary profiles: per event O(users of the item), per ranking O(k x items).

    Each user's profile holds their last ``window`` items, evicted like the
    engine's history, so a checkpoint's histories rebuild the model exactly.
    Where no neighbour has a say, item popularity breaks the tie.
    """

    # A kNN ranking needs every neighbour's profile, which a store reader does
    # not have: store lookups rank by popularity (see docs/evaluation.md, "Tuning").
    score_rule = "popular"

    def __init__(self, k: int = 50, window: int = 500):
        super().__init__(k=k)
        self.window = window

    def initialize(self) -> None:
        super().initialize()
        self._profiles: list[dict[int, None]] = []  # user -> items, oldest first
        self._item_users: list[set[int]] = []
        self._overlap: list[dict[int, int]] = []  # user -> {other user: shared items}
        self._item_counts = GrowableRows(0)  # users who liked the item
        self._touched: set[int] = set()  # items whose count changed since the last drain

    def register_user(self, user: User) -> None:
        check_dense(user.index, self.n_user, "user")
        self._profiles.append({})
        self._overlap.append({})
        self.n_user += 1

    def register_item(self, item: Item) -> None:
        check_dense(item.index, self.n_item, "item")
        self._item_users.append(set())
        self._item_counts.append(0.0)
        self.n_item += 1

    def update(self, e: Event, batch_train: bool = False) -> None:
        self.learn_one(e.user.index, e.item.index)

    def learn_one(self, u: int, i: int) -> None:
        self.update_model(u, i, 1.0)

    def update_model(self, ua: int, ia: int, value: float) -> None:
        profile = self._profiles[ua]
        if ia in profile:
            del profile[ia]  # re-interaction: the item becomes the newest
            profile[ia] = None
            return
        profile[ia] = None
        self._link(ua, ia, +1)
        if len(profile) > self.window:
            oldest = next(iter(profile))
            del profile[oldest]
            self._link(ua, oldest, -1)

    def _link(self, ua: int, ia: int, sign: int) -> None:
        users = self._item_users[ia]
        if sign < 0:
            users.discard(ua)
        overlap = self._overlap
        for uy in users:
            if uy == ua:
                continue
            shared = overlap[ua].get(uy, 0) + sign
            if shared:
                overlap[ua][uy] = overlap[uy][ua] = shared
            else:
                del overlap[ua][uy], overlap[uy][ua]
        if sign > 0:
            users.add(ua)
        self._item_counts.view[ia] += sign
        self._touched.add(ia)

    def drain_touched(self) -> set[int]:
        touched, self._touched = self._touched, set()
        return touched

    def score(self, user: User, candidates: np.ndarray) -> np.ndarray:
        return self.scores_all(user.index)[candidates]

    def recommend(self, user: User, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = self.score(user, candidates)
        return self.scores2recos(scores, candidates, rev=True)

    def scores_all(self, ua: int) -> np.ndarray:
        """Sum of the ``k`` nearest users' cosine similarities per item they liked,
        plus popularity scaled below any vote: (n_items,) float64."""
        counts = self._item_counts.view.astype(np.float64)
        scores = counts / (counts.max() + 1.0) * 1e-3 if len(counts) else counts
        neighbours = self._overlap[ua]
        if not neighbours:
            return scores
        others = np.fromiter(neighbours, dtype=np.int64, count=len(neighbours))
        shared = np.fromiter(neighbours.values(), dtype=np.float64, count=len(neighbours))
        sizes = np.array([len(self._profiles[v]) for v in others.tolist()], dtype=np.float64)
        similarity = shared / np.sqrt(sizes * len(self._profiles[ua]))
        # The k most similar; ties go to the lower user index, so rankings are reproducible.
        order = np.lexsort((others, -similarity))[: self.k]
        for v, weight in zip(others[order].tolist(), similarity[order].tolist(), strict=True):
            items = self._profiles[v]
            scores[np.fromiter(items, dtype=np.int64, count=len(items))] += weight
        return scores

    def load_state(self, user_rows, item_rows, item_bias, state, histories) -> None:
        """Rebuild from the histories (oldest first): the profiles are the model."""
        self.initialize()
        for _ in range(len(user_rows)):
            self.register_user(User(self.n_user))
        for _ in range(len(item_rows)):
            self.register_item(Item(self.n_item))
        for user, items in histories.items():
            for item in items:
                self.update_model(user, item, 1.0)
