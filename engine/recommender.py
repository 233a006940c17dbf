"""The only module that imports FluRS: models, the id registry, export and import.

FluRS wants dense indices registered in order, copies its whole item matrix
for every new item, stores a dict per user and logs at INFO on every MF
update. The subclasses below keep FluRS's recommender interface (initialize,
register, update, score, recommend) but keep factors in growable float32
matrices, so registering an id is amortised O(1) and a million users fit in
memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from flurs.baseline.popular import Popular
from flurs.data.entity import Event, Item, User
from flurs.recommender.bprmf import BPRMFRecommender
from flurs.recommender.matrix_factorization import MFRecommender

from engine.rows import GrowableRows
from storage.ranking import score_items

# Importing flurs attaches a DEBUG handler to its logger; route it through ours.
_flurs_logger = logging.getLogger("flurs")
for _handler in list(_flurs_logger.handlers):
    _flurs_logger.removeHandler(_handler)
_flurs_logger.setLevel(logging.WARNING)

# Hyper-parameters that learn on a stream (FluRS's defaults barely do: on
# MovieLens 100k, MF with k=40, learn_rate=0.003 reaches recall@10 = 0.009;
# k=10, learn_rate=0.05 reaches 0.078).
DEFAULT_PARAMS: dict[str, dict] = {
    "mf": {"k": 10, "learn_rate": 0.05, "l2_reg": 0.01},
    "bprmf": {"k": 10, "learn_rate": 0.05, "l2_reg": 0.01},
    "popular": {},
}
SCORE_RULE = {"mf": "mf", "bprmf": "dot", "popular": "popular"}
INIT_STD = 0.1


class _FactorStore:
    """Growable user (P) and item (Q) factor matrices shared by the MF variants."""

    def _init_factors(self, k: int, rng: np.random.Generator) -> None:
        self._rng = rng
        self._P = GrowableRows(k)
        self._Q = GrowableRows(k)

    def is_new_user(self, u: int) -> bool:
        return u >= self.n_user

    def is_new_item(self, i: int) -> bool:
        return i >= self.n_item

    def register_user(self, user: User) -> None:
        _check_dense(user.index, self.n_user, "user")
        self._P.append(self._rng.normal(0.0, INIT_STD, self.k))
        self.n_user += 1

    def register_item(self, item: Item) -> None:
        _check_dense(item.index, self.n_item, "item")
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
            raise AttributeError("item factors are set through load_factors()")

    def load_factors(self, P: np.ndarray, Q: np.ndarray) -> None:
        self._P = GrowableRows.from_array(P)
        self._Q = GrowableRows.from_array(Q)
        self.n_user, self.n_item = len(P), len(Q)


class StreamingMF(_FactorStore, MFRecommender):
    """FluRS incremental MF (Vinagre et al. 2014) with O(1) registration and float32 factors."""

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

    def update_model(self, ua: int, ia: int, value: float) -> None:
        P, Q = self._P.view, self._Q.view
        u_vec, i_vec = P[ua].copy(), Q[ia].copy()
        err = value - float(u_vec @ i_vec)
        # Plain SGD on (value - p.q)^2 + l2 (|p|^2 + |q|^2), both from the old vectors.
        P[ua] = u_vec + self.learn_rate * 2.0 * (err * i_vec - self.l2_reg_u * u_vec)
        Q[ia] = i_vec + self.learn_rate * 2.0 * (err * u_vec - self.l2_reg_i * i_vec)

    def score(self, user: User, candidates: np.ndarray) -> np.ndarray:
        return np.abs(1.0 - self._Q.view[candidates] @ self._P.view[user.index])


class StreamingBPRMF(_FactorStore, BPRMFRecommender):
    """FluRS BPR-MF with O(1) registration and O(1) negative sampling.

    FluRS draws the negative item from ``set(range(n_item)) - known_items`` on
    every update, O(n_items); here it is drawn by rejection against the user's
    known items, which the caller provides.
    """

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

    def update(self, e: Event, batch_train: bool = False) -> None:
        self.update_model(e.user.index, e.item.index)

    def update_model(self, ua: int, ia: int) -> None:
        j = self._sample_negative(ua, ia)
        if j is None:
            return
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

    def score(self, user: User, candidates: np.ndarray) -> np.ndarray:
        return self._Q.view[candidates] @ self._P.view[user.index]


class StreamingPopular(Popular):
    """FluRS's popularity baseline with an amortised O(1) item counter."""

    def __init__(self):
        super().__init__()
        self._freq = GrowableRows(0)

    def register_item(self, item: Item) -> None:
        _check_dense(item.index, self.n_item, "item")
        self._freq.append(0.0)
        self.n_item += 1

    def register_user(self, user: User) -> None:
        _check_dense(user.index, self.n_user, "user")
        self.n_user += 1

    def is_new_user(self, u: int) -> bool:
        return u >= self.n_user

    def is_new_item(self, i: int) -> bool:
        return i >= self.n_item

    @property
    def freq(self) -> np.ndarray:
        return self._freq.view

    @freq.setter
    def freq(self, value: np.ndarray) -> None:
        if np.size(value):
            raise AttributeError("counts are set through load_counts()")

    def update(self, e: Event, batch_train: bool = False) -> None:
        self._freq.view[e.item.index] += 1.0

    def load_counts(self, counts: np.ndarray, n_user: int) -> None:
        self._freq = GrowableRows.from_array(counts)
        self.n_item, self.n_user = len(counts), n_user


class Recommender:
    """One FluRS model behind string ids.

    ``register`` maps an external id to a dense index on first sight; ``learn``
    takes one positive (user, item); ``scores`` gives every item's score for a
    user, higher is better, by the same rule the store's readers use.
    """

    def __init__(
        self,
        model: str = "mf",
        params: dict | None = None,
        seed: int = 0,
        known_items: Callable[[int], dict] | None = None,
    ):
        if model not in DEFAULT_PARAMS:
            raise ValueError(f"unknown model {model!r}; choose one of {', '.join(DEFAULT_PARAMS)}")
        self.model = model
        self.params = {**DEFAULT_PARAMS[model], **(params or {})}
        self.score_rule = SCORE_RULE[model]
        self.user_ids: list[str] = []
        self.item_ids: list[str] = []
        self._user_index: dict[str, int] = {}
        self._item_index: dict[str, int] = {}
        rng = np.random.default_rng(seed)
        if model == "mf":
            self._flurs = StreamingMF(rng=rng, **self.params)
        elif model == "bprmf":
            self._flurs = StreamingBPRMF(rng=rng, known_items=known_items, **self.params)
        else:
            self._flurs = StreamingPopular(**self.params)
        self._flurs.initialize()
        self.k = self.params.get("k", 0)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def user_index(self, user: str) -> int | None:
        return self._user_index.get(user)

    def item_index(self, item: str) -> int | None:
        return self._item_index.get(item)

    def register_user(self, user: str) -> int:
        """Return the user's index, registering the id if it is new."""
        index = self._user_index.get(user)
        if index is None:
            index = self._user_index[user] = len(self.user_ids)
            self.user_ids.append(user)
            self._flurs.register(User(index))
        return index

    def register_item(self, item: str) -> int:
        index = self._item_index.get(item)
        if index is None:
            index = self._item_index[item] = len(self.item_ids)
            self.item_ids.append(item)
            self._flurs.register(Item(index))
        return index

    def learn(self, user: int, item: int) -> None:
        """Update the model from one positive interaction (indices already registered)."""
        self._flurs.update(Event(User(user), Item(item)))

    def scores(self, user: int) -> np.ndarray:
        """Every item's score for ``user``: (n_items,) float64, higher is better."""
        rule, user_vector, item_factors, item_bias = self.ranking_inputs(user)
        return score_items(rule, user_vector, item_factors, item_bias)

    def ranking_inputs(self, user: int | None):
        """(score rule, user vector or None, item factors, item bias) for storage.ranking."""
        if self.model == "popular":
            return "popular", None, self._empty_factors(), self._flurs.freq
        user_vector = self._flurs.P[user] if user is not None else None
        return self.score_rule, user_vector, self._flurs.Q, self._zero_bias()

    def user_factors(self, users: np.ndarray) -> np.ndarray:
        """Factor rows of ``users``: (len(users), k) float32."""
        if self.model == "popular":
            return np.zeros((len(users), 0), dtype=np.float32)
        return self._flurs.P[users].astype(np.float32)

    def export_items(self) -> tuple[np.ndarray, np.ndarray]:
        """(item factors (n_items, k) float32, item bias (n_items,) float32), copies."""
        if self.model == "popular":
            return self._empty_factors(), self._flurs.freq.astype(np.float32)
        return self._flurs.Q.astype(np.float32), self._zero_bias()

    def load(
        self,
        user_ids: list[str],
        item_ids: list[str],
        user_factors: np.ndarray,
        item_factors: np.ndarray,
        item_bias: np.ndarray,
    ) -> None:
        """Replace the whole state with an exported one (ids in index order)."""
        self.user_ids, self.item_ids = list(user_ids), list(item_ids)
        self._user_index = {u: i for i, u in enumerate(self.user_ids)}
        self._item_index = {v: i for i, v in enumerate(self.item_ids)}
        if self.model == "popular":
            self._flurs.load_counts(np.asarray(item_bias, dtype=np.float32), len(user_ids))
        else:
            self._flurs.load_factors(
                np.asarray(user_factors, dtype=np.float32),
                np.asarray(item_factors, dtype=np.float32),
            )

    def _empty_factors(self) -> np.ndarray:
        return np.zeros((self.n_items, 0), dtype=np.float32)

    def _zero_bias(self) -> np.ndarray:
        return np.zeros(self.n_items, dtype=np.float32)


def _check_dense(index: int, expected: int, kind: str) -> None:
    if index != expected:
        raise IndexError(f"{kind} index {index} registered out of order (expected {expected})")
