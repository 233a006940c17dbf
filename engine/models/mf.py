"""Matrix factorisation on a stream: FluRS's MF and BPR-MF with growable factor rows."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from flurs.data.entity import Event, Item, User
from flurs.recommender.bprmf import BPRMFRecommender
from flurs.recommender.matrix_factorization import MFRecommender

from engine.models.base import (
    INIT_STD,
    DenseIndices,
    check_dense,
)
from engine.models.growable import GrowableRows

# -- matrix factorisation -----------------------------------------------------


class _FactorStore(DenseIndices):
    """Growable user (P) and item (Q) factor matrices shared by the MF variants."""

    def _init_factors(self, k: int, rng: np.random.Generator) -> None:
        self._rng = rng
        self._P = GrowableRows(k)
        self._Q = GrowableRows(k)

    def register_user(self, user: User) -> None:
        check_dense(user.index, self.n_user, "user")
        self._P.append(self._rng.normal(0.0, INIT_STD, self.k))
        self.n_user += 1

    def register_item(self, item: Item) -> None:
        check_dense(item.index, self.n_item, "item")
        self._Q.append(self._rng.normal(0.0, INIT_STD, self.k))
        self.n_item += 1

    @property
    def P(self) -> np.ndarray:
        return self._P.view

    @property
    def Q(self) -> np.ndarray:
        return self._Q.view

    @Q.setter
    def Q(self, value: np.ndarray) -> None:
        # FluRS's constructor sets Q = np.array([]); factors live in self._Q.
        if np.size(value):
            raise AttributeError("item factors are set through load_state()")

    def ranking_inputs(self, u: int | None):
        user = self._P.view[u] if u is not None else None
        return self.score_rule, user, self._Q.view, self._zero_bias()

    def user_rows(self, users: np.ndarray) -> np.ndarray:
        return self._P.view[users]

    def export_items(self) -> tuple[np.ndarray, np.ndarray]:
        return self._Q.view.copy(), self._zero_bias()

    def item_rows(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._Q.view[items], np.zeros(len(items), dtype=np.float32)

    def global_state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, user_rows, item_rows, item_bias, state, histories) -> None:
        self._P = GrowableRows.from_array(user_rows)
        self._Q = GrowableRows.from_array(item_rows)
        self.n_user, self.n_item = len(user_rows), len(item_rows)

    def _zero_bias(self) -> np.ndarray:
        return np.zeros(self.n_item, dtype=np.float32)


class StreamingMF(_FactorStore, MFRecommender):
    """FluRS incremental MF (Vinagre et al. 2014): ranks by -|1 - p_u . q_i| (rule "mf")."""

    score_rule = "mf"

    def __init__(
        self,
        k: int = 10,
        l2_reg: float = 0.01,
        learn_rate: float = 0.05,
        rng: np.random.Generator | None = None,
    ):
        super().__init__(k=k, l2_reg=l2_reg, learn_rate=learn_rate)
        self._init_factors(k, rng or np.random.default_rng())

    def update(self, e: Event, batch_train: bool = False) -> None:
        if not batch_train and self.static:
            return
        # Positive-only feedback: the target is always 1 (FluRS forces it too, with a log line).
        self.update_model(e.user.index, e.item.index, 1.0)

    def learn_one(self, u: int, i: int) -> None:
        """update() without building FluRS's Event, User and Item objects."""
        if not self.static:
            self.update_model(u, i, 1.0)

    def update_model(self, ua: int, ia: int, value: float) -> None:
        P, Q = self._P.view, self._Q.view
        u_vec, i_vec = P[ua].copy(), Q[ia].copy()
        err = value - float(u_vec @ i_vec)
        # Plain SGD on (value - p.q)^2 + l2 (|p|^2 + |q|^2), both from the old vectors.
        P[ua] = u_vec + self.learn_rate * 2.0 * (err * i_vec - self.l2_reg_u * u_vec)
        Q[ia] = i_vec + self.learn_rate * 2.0 * (err * u_vec - self.l2_reg_i * i_vec)


class StreamingBPRMF(_FactorStore, BPRMFRecommender):
    """FluRS BPR-MF with O(1) negative sampling; ranks by p_u . q_i (rule "dot").

    FluRS draws the negative item from ``set(range(n_item)) - known_items`` on
    every update, O(n_items); here it is drawn by rejection against the user's
    known items, which the caller provides.
    """

    score_rule = "dot"

    def __init__(
        self,
        k: int = 10,
        l2_reg: float = 0.01,
        learn_rate: float = 0.05,
        rng: np.random.Generator | None = None,
        known_items: Callable[[int], dict] | None = None,
    ):
        super().__init__(k=k, l2_reg=l2_reg, learn_rate=learn_rate)
        self._init_factors(k, rng or np.random.default_rng())
        self._known_items = known_items or (lambda u: {})
        self._touched: set[int] = set()

    def update(self, e: Event, batch_train: bool = False) -> None:
        self.update_model(e.user.index, e.item.index)

    def learn_one(self, u: int, i: int) -> None:
        self.update_model(u, i)

    def drain_touched(self) -> set[int]:
        """Negative items moved since the last call (the positive ones the facade knows)."""
        touched, self._touched = self._touched, set()
        return touched

    def update_model(self, ua: int, ia: int) -> None:
        j = self._sample_negative(ua, ia)
        if j is None:
            return
        self._touched.add(j)
        P, Q = self._P.view, self._Q.view
        u_vec, i_vec, j_vec = P[ua].copy(), Q[ia].copy(), Q[j].copy()
        x_uij = float(u_vec @ (i_vec - j_vec))
        # d/dx log sigmoid(x) = sigmoid(-x); clipped so exp cannot overflow.
        g = 1.0 / (1.0 + np.exp(min(max(x_uij, -30.0), 30.0)))
        lr = self.learn_rate
        P[ua] = u_vec + lr * (g * (i_vec - j_vec) - self.l2_reg_u * u_vec)
        Q[ia] = i_vec + lr * (g * u_vec - self.l2_reg_i * i_vec)
        Q[j] = j_vec + lr * (-g * u_vec - self.l2_reg_j * j_vec)

    def _sample_negative(self, ua: int, ia: int) -> int | None:
        known = self._known_items(ua)
        for _ in range(20):
            j = int(self._rng.integers(self.n_item))
            if j != ia and j not in known:
                return j
        return None


class OriginalMF:
    """The original FluRS + Faust write-up's model, for the pipeline benchmark's reference run.

    FluRS's own MFRecommender (k=40, its defaults), with every MovieLens 100k
    user and item registered up front (943 and 1682, dense indices from the
    file's 1-based ids), learning each event with FluRS's Event objects.
    """

    def __init__(self, n_users: int = 943, n_items: int = 1682, k: int = 40):
        self._model = MFRecommender(k=k)
        self._model.initialize()
        for index in range(n_users):
            self._model.register(User(index))
        for index in range(n_items):
            self._model.register(Item(index))

    def learn_one(self, user: int, item: int, value: float = 1.0) -> None:
        """Learn one event of 0-based ``user`` and ``item``."""
        self._model.update(Event(User(user), Item(item), value))
