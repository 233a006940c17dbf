"""The only module that imports FluRS: models, the id registry, export and import.

FluRS wants dense indices registered in order, copies whole matrices for
every new user or item (np.concatenate), stores a dict per user and logs at
INFO on every MF update. The subclasses below keep FluRS's recommender
interface (initialize, register, update, score, recommend) but keep their
state in growable float32 rows, so registering an id is amortised O(1).

Every model also speaks one export protocol, used for checkpoints and the
store: ``ranking_inputs(u)`` gives (score rule, user row, item rows, item
bias) for storage.ranking, ``user_rows``/``export_items`` copy the rows,
``global_state`` holds the few shared arrays that belong to no row, and
``load_state`` resumes from all of it.
"""

from __future__ import annotations

import base64
import io
import logging
import zlib
from collections.abc import Callable

import numpy as np
from flurs.baseline.popular import Popular
from flurs.data.entity import Event, Item, User
from flurs.recommender.bprmf import BPRMFRecommender
from flurs.recommender.factorization_machine import FMRecommender
from flurs.recommender.matrix_factorization import MFRecommender
from flurs.recommender.online_sketch import SketchRecommender
from flurs.recommender.user_knn import UserKNNRecommender

from engine.kernels import count_rank
from engine.models.features import FeatureTable
from engine.models.growable import GrowableRows
from engine.models.hybrid import HybridRecommender
from storage.ranking import score_items

# Importing flurs attaches a DEBUG handler to its logger; route it through ours.
_flurs_logger = logging.getLogger("flurs")
for _handler in list(_flurs_logger.handlers):
    _flurs_logger.removeHandler(_handler)
_flurs_logger.setLevel(logging.WARNING)

DEFAULT_MODEL = "hybrid"
# Hyper-parameters that learn on a stream, chosen by engine/evaluation/tune.py on the
# pre-training and hold-out part of MovieLens 100k only (the hybrid's: of
# 100k and latest-small jointly). FluRS's own defaults barely learn: MF with
# k=40, learn_rate=0.003 reaches recall@10 = 0.009.
DEFAULT_PARAMS: dict[str, dict] = {
    "hybrid": {
        "window": 3,
        "context": 3,
        "decay": 0.5,
        "co_weight": 5.0,
        "profile": 20,
        "profile_weight": 8.0,
        "stage_weight": 0.5,
        "neighbours": 128,
        "popularity_window": 300,
    },
    "popular": {},
    "mf": {"k": 10, "learn_rate": 0.1, "l2_reg": 0.01},
    "bprmf": {"k": 32, "learn_rate": 0.5, "l2_reg": 0.01},
    "userknn": {"k": 50},
    # Sketch and FM scored alike across their grids (within noise): the cheapest won.
    "sketch": {"id_dims": 16},
    "fm": {"k": 10, "learn_rate": 0.05, "l2_reg": 0.01},
}
MODELS = tuple(DEFAULT_PARAMS)
INIT_STD = 0.1


# -- matrix factorisation -----------------------------------------------------


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


# -- popularity -------------------------------------------------------------------


class StreamingPopular(Popular):
    """FluRS's popularity baseline with an amortised O(1) item counter (rule "popular")."""

    score_rule = "popular"

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
            raise AttributeError("counts are set through load_state()")

    def update(self, e: Event, batch_train: bool = False) -> None:
        self.learn_one(e.user.index, e.item.index)

    def learn_one(self, u: int, i: int) -> None:
        freq = self._freq.flat
        freq[i] = freq[i] + 1.0

    def ranking_inputs(self, u: int | None):
        return self.score_rule, None, _no_columns(self.n_item), self._freq.view

    def user_rows(self, users: np.ndarray) -> np.ndarray:
        return _no_columns(len(users))

    def export_items(self) -> tuple[np.ndarray, np.ndarray]:
        return _no_columns(self.n_item), self._freq.view.copy()

    def item_rows(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _no_columns(len(items)), self._freq.view[items]

    def global_state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, user_rows, item_rows, item_bias, state, histories) -> None:
        self._freq = GrowableRows.from_array(np.asarray(item_bias, dtype=np.float32))
        self.n_item, self.n_user = len(item_bias), len(user_rows)


# -- user-based k nearest neighbours ----------------------------------------------------


class StreamingUserKNN(UserKNNRecommender):
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
    # not have: store lookups rank by popularity (see docs/results-quality.md).
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

    def is_new_user(self, u: int) -> bool:
        return u >= self.n_user

    def is_new_item(self, i: int) -> bool:
        return i >= self.n_item

    def register_user(self, user: User) -> None:
        _check_dense(user.index, self.n_user, "user")
        self._profiles.append({})
        self._overlap.append({})
        self.n_user += 1

    def register_item(self, item: Item) -> None:
        _check_dense(item.index, self.n_item, "item")
        self._item_users.append(set())
        self._item_counts.append(0.0)
        self.n_item += 1

    def update(self, e: Event, batch_train: bool = False) -> None:
        self.update_model(e.user.index, e.item.index, 1.0)

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

    def ranking_inputs(self, u: int | None):
        return self.score_rule, None, _no_columns(self.n_item), self._item_counts.view

    def user_rows(self, users: np.ndarray) -> np.ndarray:
        return _no_columns(len(users))

    def export_items(self) -> tuple[np.ndarray, np.ndarray]:
        return _no_columns(self.n_item), self._item_counts.view.copy()

    def item_rows(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _no_columns(len(items)), self._item_counts.view[items]

    def global_state(self) -> dict[str, np.ndarray]:
        return {}

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


# -- online matrix sketching --------------------------------------------------------


class _RanksByExportedRows:
    """Scoring for models that rank by their exported rows, as the store's readers do.

    The subclass provides ``export_items()``, ``user_rows()`` and ``score_rule``.
    """

    def score(self, user: User, candidates: np.ndarray, context=None) -> np.ndarray:
        return self.scores_all(user.index)[candidates]

    def recommend(self, user: User, candidates: np.ndarray, context=None):
        scores = self.score(user, candidates)
        return self.scores2recos(scores, candidates, rev=True)

    def scores_all(self, u: int) -> np.ndarray:
        return score_items(*self.ranking_inputs(u))

    def ranking_inputs(self, u: int | None):
        items, bias = self.export_items()
        user = self.user_rows(np.array([u]))[0] if u is not None else None
        return self.score_rule, user, items, bias


class StreamingSketch(_RanksByExportedRows, SketchRecommender):
    """FluRS online matrix sketching (Kitazawa 2017) on per-id codes plus side features.

    FluRS's sketch reads only feature vectors, so id-only events give it
    nothing to work with. Here a user's block is a fixed random unit code of
    ``id_dims`` values seeded by the id, concatenated with the user's side
    features and scaled to unit length; an item's block likewise. The
    Frequent Directions sketch tracks the principal directions of the liked
    (user, item) pairs, and an item ranks higher the closer the pair lies to
    them -- FluRS's score ``|(I - U U^T) y|`` ascending.

    With both blocks of unit length that order is exactly ``u . F_i + b_i``
    with ``F_i = 2 U_u U_i^T i`` and ``b_i = |U_i^T i|^2`` (rule "dot"), so
    the store ranks from rows: users are [u | 0], items [F_i | i].
    """

    score_rule = "dot"
    exports_all_items = True  # the sketch's directions move every item's row

    def __init__(self, user_dim: int, item_dim: int, ell: int = -1):
        super().__init__(p=user_dim + item_dim, ell=ell, proj="Raw")
        self.user_dim, self.item_dim = user_dim, item_dim

    def initialize(self) -> None:
        super().initialize()
        self._user_blocks = GrowableRows(self.user_dim)
        self._item_blocks = GrowableRows(self.item_dim)
        self.B = np.zeros((self.k, self.ell))
        self.U_r = np.zeros((self.k, self.r))

    def is_new_user(self, u: int) -> bool:
        return u >= self.n_user

    def is_new_item(self, i: int) -> bool:
        return i >= self.n_item

    def register_user(self, user: User) -> None:
        _check_dense(user.index, self.n_user, "user")
        self._user_blocks.append(user.feature)
        self.n_user += 1

    def register_item(self, item: Item) -> None:
        _check_dense(item.index, self.n_item, "item")
        self._item_blocks.append(item.feature)
        self.n_item += 1

    def update(self, e: Event, batch_train: bool = False) -> None:
        y = np.concatenate(
            [self._user_blocks.view[e.user.index], self._item_blocks.view[e.item.index]]
        ).astype(np.float64)
        self.update_model(y)

    def update_model(self, y: np.ndarray) -> None:
        """FluRS's Frequent Directions step, without sklearn's per-call overhead (ms per event)
        and with the shrink clipped at 0, where FluRS's float error gives sqrt(-tiny) = NaN."""
        y = y / np.linalg.norm(y)
        empty = np.flatnonzero(~self.B.any(axis=0))
        self.B[:, empty[0] if len(empty) else self.ell - 1] = y
        U, s, _ = np.linalg.svd(self.B, full_matrices=False)
        self.U_r = U[:, : self.r]
        shrunk = np.sqrt(np.maximum(s[: self.ell] ** 2 - s[self.ell - 1] ** 2, 0.0))
        self.B = U[:, : self.ell] * shrunk

    def user_rows(self, users: np.ndarray) -> np.ndarray:
        blocks = self._user_blocks.view[np.asarray(users, dtype=np.int64)]
        return np.hstack([blocks, np.zeros((len(blocks), self.item_dim), dtype=np.float32)])

    def export_items(self) -> tuple[np.ndarray, np.ndarray]:
        U_user = self.U_r[: self.user_dim].astype(np.float32)
        U_item = self.U_r[self.user_dim :].astype(np.float32)
        items = self._item_blocks.view
        projected = items @ U_item  # (n_items, r)
        rows = np.hstack([2.0 * projected @ U_user.T, items])
        return rows, np.einsum("ij,ij->i", projected, projected)

    def global_state(self) -> dict[str, np.ndarray]:
        return {"B": self.B, "U_r": self.U_r}

    def load_state(self, user_rows, item_rows, item_bias, state, histories) -> None:
        self._user_blocks = GrowableRows.from_array(user_rows[:, : self.user_dim])
        self._item_blocks = GrowableRows.from_array(item_rows[:, self.user_dim :])
        self.n_user, self.n_item = len(user_rows), len(item_rows)
        self.B, self.U_r = state["B"].copy(), state["U_r"].copy()


def id_code(kind: str, key: str, dims: int) -> np.ndarray:
    """A fixed random unit vector (dims,) for an id: the same id always gets the same code."""
    seed = zlib.crc32(f"{kind}:{key}".encode())
    code = np.random.default_rng(seed).normal(size=dims)
    return code / np.linalg.norm(code)


# -- factorisation machines ------------------------------------------------------------


class StreamingFM(_RanksByExportedRows, FMRecommender):
    """FluRS incremental FM (Kitazawa 2016) on [user one-hot, user features, item one-hot,
    item features], trained like FluRS on positives with target 1.

    FluRS's FM re-allocates its weight matrix for every new id, loops over all
    p inputs per update, and with side features puts the user-feature rows
    of ``V`` where the input vector has the item ids. Here each id has its
    own row, updates touch only the non-zero inputs, and L2 is fixed (FluRS's
    adaptive regulariser assigns ``l2_rev_V``, a typo, so V's never adapts).

    Ranking is by the predicted value, highest first. FluRS ranks by
    ``|1 - pred|``; that needs a per-user constant made of shared feature
    weights, which change with every event and which a store reader could
    not have, while the order by value drops it and is exactly a dot
    product: users [v_u, w_u, f_u | 0 ...], items
    [v_i + V_G g_i, 1, w_F + V_F (v_i + V_G g_i) | v_i, w_i, g_i].
    """

    score_rule = "dot"
    exports_all_items = True  # shared feature weights move every item's row

    def __init__(
        self,
        user_dim: int = 0,
        item_dim: int = 0,
        k: int = 10,
        learn_rate: float = 0.05,
        l2_reg: float = 0.01,
        rng: np.random.Generator | None = None,
    ):
        super().__init__(p=max(user_dim + item_dim, 1), k=k, learn_rate=learn_rate)
        self.user_dim, self.item_dim = user_dim, item_dim
        self.l2_reg = l2_reg
        self._rng = rng or np.random.default_rng()

    def initialize(self, static: bool = False, use_index: bool = True) -> None:
        super().initialize(static=static, use_index=use_index)
        k, n_side = self.k, self.user_dim + self.item_dim
        self._users = GrowableRows(k + 1 + self.user_dim)  # [v_u, w_u, f_u]
        self._items = GrowableRows(k + 1 + self.item_dim)  # [v_i, w_i, g_i]
        self.w0 = np.zeros(1, dtype=np.float32)
        self.w = np.zeros(n_side, dtype=np.float32)  # side features: users', then items'
        self.V = self._rng.normal(0.0, INIT_STD, (n_side, k)).astype(np.float32)

    def is_new_user(self, u: int) -> bool:
        return u >= self.n_user

    def is_new_item(self, i: int) -> bool:
        return i >= self.n_item

    def register_user(self, user: User) -> None:
        _check_dense(user.index, self.n_user, "user")
        self._users.append(
            np.concatenate([self._rng.normal(0.0, INIT_STD, self.k), [0.0], user.feature])
        )
        self.n_user += 1

    def register_item(self, item: Item) -> None:
        _check_dense(item.index, self.n_item, "item")
        self._items.append(
            np.concatenate([self._rng.normal(0.0, INIT_STD, self.k), [0.0], item.feature])
        )
        self.n_item += 1

    def update(self, e: Event, batch_train: bool = False) -> None:
        self.update_model(e.user.index, e.item.index)

    def update_model(self, ua: int, ia: int) -> None:  # type: ignore[override]
        k, lr, reg = self.k, self.learn_rate, self.l2_reg
        user, item = self._users.view[ua], self._items.view[ia]
        # The active inputs: the two ids (x = 1) and the non-zero side features.
        side = np.concatenate([user[k + 1 :], item[k + 1 :]])
        active = np.flatnonzero(side)
        x = side[active]
        V_side, w_side = self.V[active], self.w[active]
        vectors = np.vstack([user[:k], item[:k], V_side])  # (2 + n_active, k)
        values = np.concatenate([[1.0, 1.0], x]).astype(np.float32)
        total = values @ vectors
        pred = (
            self.w0[0]
            + user[k]
            + item[k]
            + w_side @ x
            + 0.5 * (total @ total - (values**2) @ np.einsum("ij,ij->i", vectors, vectors))
        )
        err = 1.0 - pred  # positive-only feedback: the target is 1
        # Gradient of the squared error: d pred / d v_j = x_j (total - x_j v_j).
        grads = values[:, None] * (total[None, :] - values[:, None] * vectors)
        new_vectors = vectors + 2.0 * lr * (err * grads - reg * vectors)
        self.w0 += 2.0 * lr * (err - reg * self.w0)
        user[k] += 2.0 * lr * (err - reg * user[k])
        item[k] += 2.0 * lr * (err - reg * item[k])
        self.w[active] = w_side + 2.0 * lr * (err * x - reg * w_side)
        user[:k], item[:k] = new_vectors[0], new_vectors[1]
        self.V[active] = new_vectors[2:]

    def user_rows(self, users: np.ndarray) -> np.ndarray:
        rows = self._users.view[np.asarray(users, dtype=np.int64)]
        return np.hstack([rows, np.zeros((len(rows), self._items.view.shape[1]), np.float32)])

    def export_items(self) -> tuple[np.ndarray, np.ndarray]:
        k = self.k
        items = self._items.view
        v, w_item, g = items[:, :k], items[:, k], items[:, k + 1 :]
        V_user, V_item = self.V[: self.user_dim], self.V[self.user_dim :]
        w_user, w_item_side = self.w[: self.user_dim], self.w[self.user_dim :]
        latent = v + g @ V_item  # (n_items, k): the item's whole latent vector
        # Interactions among the item's own inputs: id x features and feature pairs.
        own = 0.5 * (
            np.einsum("ij,ij->i", latent, latent)
            - np.einsum("ij,ij->i", v, v)
            - (g**2) @ np.einsum("ij,ij->i", V_item, V_item)
        )
        bias = self.w0[0] + w_item + g @ w_item_side + own
        ones = np.ones((len(items), 1), dtype=np.float32)
        rows = np.hstack([latent, ones, w_user + latent @ V_user.T, items])
        return rows.astype(np.float32), bias.astype(np.float32)

    def global_state(self) -> dict[str, np.ndarray]:
        return {"w0": self.w0, "w": self.w, "V": self.V}

    def load_state(self, user_rows, item_rows, item_bias, state, histories) -> None:
        width = self.k + 1 + self.user_dim
        self._users = GrowableRows.from_array(user_rows[:, :width])
        self._items = GrowableRows.from_array(item_rows[:, width:])
        self.n_user, self.n_item = len(user_rows), len(item_rows)
        self.w0, self.w, self.V = (state[name].copy() for name in ("w0", "w", "V"))


# -- the facade -----------------------------------------------------------------------


class Recommender:
    """One model behind string ids.

    ``register_user``/``register_item`` map an external id to a dense index on
    first sight; ``learn`` takes one positive (user, item); ``scores`` gives
    every item's score for a user, higher is better, by the same rule the
    store's readers use (``ranking_inputs``).

    ``features`` (side features per id) feed fm and sketch; ``history_limit``
    is the engine's per-user history bound, which userknn's profiles follow.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        params: dict | None = None,
        seed: int = 0,
        known_items: Callable[[int], dict] | None = None,
        features: FeatureTable | None = None,
        history_limit: int = 500,
    ):
        if model not in DEFAULT_PARAMS:
            raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
        self.model = model
        params = dict(params or {})
        state = params.pop("state", None)
        self.params = {**DEFAULT_PARAMS[model], **params}
        self.features = features
        self.user_ids: list[str] = []
        self.item_ids: list[str] = []
        self._user_index: dict[str, int] = {}
        self._item_index: dict[str, int] = {}
        self._flurs = self._build(model, seed, known_items, history_limit)
        self._flurs.initialize()
        # Models that learn from indices skip FluRS's per-event Event objects.
        self._learn_one = getattr(self._flurs, "learn_one", None)
        # The hybrid ranks and learns a run of events, with the engine's history
        # and baseline, in one compiled call (HybridRecommender.observe_run);
        # None for the other models.
        self.observe_run = getattr(self._flurs, "observe_run", None)
        self._touched_items: set[int] = set()
        self.score_rule = self._flurs.score_rule
        self.k = self.params.get("k", 0)
        self._pending_state = _decode_state(state) if state else None

    def _build(self, model: str, seed: int, known_items, history_limit: int):
        rng = np.random.default_rng(seed)
        p = self.params
        if model == "hybrid":
            return HybridRecommender(known_items=known_items, **p)
        if model == "mf":
            return StreamingMF(rng=rng, **p)
        if model == "bprmf":
            return StreamingBPRMF(rng=rng, known_items=known_items, **p)
        if model == "userknn":
            return StreamingUserKNN(window=history_limit, **p)
        if model == "sketch":
            user_dim, item_dim = self._side_dims()
            id_dims = p["id_dims"]
            return StreamingSketch(id_dims + user_dim, id_dims + item_dim, **_without(p, "id_dims"))
        if model == "fm":
            user_dim, item_dim = self._side_dims()
            return StreamingFM(user_dim, item_dim, rng=rng, **p)
        return StreamingPopular()

    def _side_dims(self) -> tuple[int, int]:
        if self.features is None:
            return 0, 0
        return self.features.user_dim, self.features.item_dim

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
            self._flurs.register(User(index, feature=self._feature("user", user)))
        return index

    def register_item(self, item: str) -> int:
        """Return the item's index, registering the id if it is new."""
        index = self._item_index.get(item)
        if index is None:
            index = self._item_index[item] = len(self.item_ids)
            self.item_ids.append(item)
            self._flurs.register(Item(index, feature=self._feature("item", item)))
        return index

    def _feature(self, kind: str, key: str) -> np.ndarray:
        """The id's feature vector for feature-based models (fm, sketch); empty otherwise."""
        if self.model not in ("fm", "sketch"):
            return _NO_FEATURES
        side = np.zeros(0, dtype=np.float32)
        if self.features is not None:
            side = self.features.user(key) if kind == "user" else self.features.item(key)
        if self.model == "fm":
            return side
        if self.model == "sketch":
            block = np.concatenate([id_code(kind, key, self.params["id_dims"]), side])
            return (block / np.linalg.norm(block)).astype(np.float32)
        return np.zeros(0)

    def learn(self, user: int, item: int) -> None:
        """Update the model from one positive interaction (indices already registered)."""
        self._touched_items.add(item)
        if self._learn_one is not None:
            self._learn_one(user, item)
        else:
            self._flurs.update(Event(User(user), Item(item)))

    def learn_again(self, user: int, item: int) -> None:
        """Learn an event seen before once more, as a batch-training epoch."""
        self._touched_items.add(item)
        self._flurs.update(Event(User(user), Item(item)), batch_train=True)

    def drain_touched_items(self) -> np.ndarray | None:
        """Items whose exported rows changed since the last call: sorted (m,) int64.

        None when every item's row moves with each event (models with shared
        state, like fm and sketch): then all of them changed.
        """
        touched, self._touched_items = self._touched_items, set()
        if getattr(self._flurs, "exports_all_items", False):
            return None
        drain = getattr(self._flurs, "drain_touched", None)
        if drain is not None:
            touched |= drain()
        return np.array(sorted(touched), dtype=np.int64)

    def scores(self, user: int) -> np.ndarray:
        """Every item's score for ``user``: (n_items,) float, higher is better."""
        if hasattr(self._flurs, "scores_all"):
            return self._flurs.scores_all(user)
        return score_items(*self._flurs.ranking_inputs(user))

    def rank_counts(self, user: int, item: int, known: np.ndarray) -> tuple[int, int, int]:
        """(items scoring above ``item`` for ``user``, items level with it, candidates).

        ``known`` (int64) items are not candidates, except ``item`` itself:
        engine.evaluation.prequential.rank_of's counts, in one compiled pass.
        """
        if hasattr(self._flurs, "rank_counts"):
            return self._flurs.rank_counts(user, item, known)
        return count_rank(self.scores(user), item, known)

    def ranking_inputs(self, user: int | None):
        """(score rule, user row or None, item rows, item bias) for storage.ranking."""
        return self._flurs.ranking_inputs(user)

    def user_factors(self, users: np.ndarray) -> np.ndarray:
        """Exported rows of ``users``: (len(users), width) float32, copies."""
        return np.asarray(self._flurs.user_rows(np.asarray(users, dtype=np.int64)), np.float32)

    def export_items(self) -> tuple[np.ndarray, np.ndarray]:
        """(item rows (n_items, width) float32, item bias (n_items,) float32), copies."""
        rows, bias = self._flurs.export_items()
        return np.asarray(rows, dtype=np.float32), np.asarray(bias, dtype=np.float32)

    def item_rows(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """export_items() of ``items`` only: ((len(items), width), (len(items),)) float32."""
        items = np.asarray(items, dtype=np.int64)
        if hasattr(self._flurs, "item_rows"):
            rows, bias = self._flurs.item_rows(items)
        else:
            rows, bias = self._flurs.export_items()
            rows, bias = rows[items], bias[items]
        return np.asarray(rows, dtype=np.float32), np.asarray(bias, dtype=np.float32)

    def drift_rows(self) -> np.ndarray:
        """Rows whose relative change between checkpoints is the model's drift.

        The exported item rows for factor models; the hybrid's rows hold counts
        and neighbour indices, so it gives each item's share of every stage's likes.
        """
        if hasattr(self._flurs, "drift_rows"):
            return self._flurs.drift_rows()
        return self.export_items()[0]

    def export_params(self) -> dict:
        """Hyper-parameters plus, for models with shared arrays (fm, sketch), their values."""
        state = self._flurs.global_state()
        return {**self.params, "state": _encode_state(state)} if state else dict(self.params)

    def load(
        self,
        user_ids: list[str],
        item_ids: list[str],
        user_factors: np.ndarray,
        item_factors: np.ndarray,
        item_bias: np.ndarray,
        history=None,
    ) -> None:
        """Replace the whole state with an exported one (ids in index order).

        ``history`` (engine.models.history.UserHistory) rebuilds models whose state is
        the users' profiles (userknn).
        """
        self.user_ids, self.item_ids = list(user_ids), list(item_ids)
        self._user_index = {u: i for i, u in enumerate(self.user_ids)}
        self._item_index = {v: i for i, v in enumerate(self.item_ids)}
        histories = {u: history.items(u).tolist() for u in range(len(user_ids))} if history else {}
        self._flurs.load_state(
            np.asarray(user_factors, dtype=np.float32),
            np.asarray(item_factors, dtype=np.float32),
            np.asarray(item_bias, dtype=np.float32),
            self._pending_state or {},
            histories,
        )


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

    def learn(self, user: int, item: int, value: float = 1.0) -> None:
        """Learn one event of 0-based ``user`` and ``item``."""
        self._model.update(Event(User(user), Item(item), value))


_NO_FEATURES = np.zeros(0)


def _no_columns(n: int) -> np.ndarray:
    return np.zeros((n, 0), dtype=np.float32)


def _without(params: dict, key: str) -> dict:
    return {name: value for name, value in params.items() if name != key}


def _encode_state(state: dict[str, np.ndarray]) -> dict[str, str]:
    """Small shared arrays as base64 of ``np.save`` bytes (exact, no pickle), for JSON params."""
    encoded = {}
    for name, array in state.items():
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        encoded[name] = base64.b64encode(buffer.getvalue()).decode("ascii")
    return encoded


def _decode_state(encoded: dict[str, str]) -> dict[str, np.ndarray]:
    return {
        name: np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False)
        for name, text in encoded.items()
    }


def _check_dense(index: int, expected: int, kind: str) -> None:
    if index != expected:
        raise IndexError(f"{kind} index {index} registered out of order (expected {expected})")


__all__ = ["DEFAULT_MODEL", "DEFAULT_PARAMS", "MODELS", "OriginalMF", "Recommender", "id_code"]
