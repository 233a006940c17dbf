"""The models behind string ids: the registry the processor uses, and the default parameters.

Each model lives in a file of its own and satisfies engine.models.base.Model;
Recommender maps external ids (strings) to the dense indices the models
want, registered in order on first sight, and speaks the export protocol the
checkpoints and the store use.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable

import numpy as np
from flurs.data.entity import Event, Item, User

from engine.kernels import count_rank
from engine.models.features import FeatureTable
from engine.models.fm import StreamingFM
from engine.models.hybrid import HybridRecommender
from engine.models.mf import StreamingBPRMF, StreamingMF
from engine.models.popular import StreamingPopular
from engine.models.sketch import StreamingSketch, id_code
from engine.models.userknn import StreamingUserKNN
from storage import score_items

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
        # The model itself (engine.models.base.Model); self.model is its name.
        self._model = self._build(model, seed, known_items, history_limit)
        self._model.initialize()
        # The hybrid ranks and learns a run of events, with the engine's history
        # and baseline, in one compiled call (HybridRecommender.observe_run);
        # None for the other models.
        self.observe_run = getattr(self._model, "observe_run", None)
        self._touched_items: set[int] = set()
        self.score_rule = self._model.score_rule
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
            self._model.register(User(index, feature=self._feature("user", user)))
        return index

    def register_item(self, item: str) -> int:
        """Return the item's index, registering the id if it is new."""
        index = self._item_index.get(item)
        if index is None:
            index = self._item_index[item] = len(self.item_ids)
            self.item_ids.append(item)
            self._model.register(Item(index, feature=self._feature("item", item)))
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

    def learn_one(self, user: int, item: int) -> None:
        """Learn one positive interaction (indices already registered)."""
        self._touched_items.add(item)
        self._model.learn_one(user, item)

    @property
    def shared_width(self) -> int:
        """Columns of one event's increment of the item statistics (see apply_shared)."""
        return getattr(self._model, "shared_width", 2)

    def apply_shared(self, items: np.ndarray, shared: np.ndarray, popularity) -> None:
        """Add other workers' positive events to the item statistics, and to ``popularity``.

        A deployment's workers share what the hybrid and popular models count
        per item; the factor models (mf, bprmf, fm, sketch) and userknn keep
        their own item state per worker, so only the baseline counts these.
        """
        apply = getattr(self._model, "apply_shared", None)
        if apply is not None:
            apply(items, shared, popularity)  # the baseline's counts included
            return
        learns_counts = self.model == "popular"
        for item in np.asarray(items, dtype=np.int64).tolist():
            popularity.add(item)
            if learns_counts:
                self._touched_items.add(item)
                self._model.learn_one(0, item)  # counts per item only; no user's row

    def adopt_user(self, user: int, items: np.ndarray) -> None:
        """Set ``user``'s row from their history (item indices, oldest first), where the model
        derives it from the history (the hybrid); other models keep the row they have."""
        adopt = getattr(self._model, "adopt_user", None)
        if adopt is not None:
            adopt(user, items)

    def learn_again(self, user: int, item: int) -> None:
        """Learn an event seen before once more, as a batch-training epoch."""
        self._touched_items.add(item)
        self._model.update(Event(User(user), Item(item)), batch_train=True)

    def drain_touched_items(self) -> np.ndarray | None:
        """Items whose exported rows changed since the last call: sorted (m,) int64.

        None when every item's row moves with each event (models with shared
        state, like fm and sketch): then all of them changed.
        """
        touched, self._touched_items = self._touched_items, set()
        if getattr(self._model, "exports_all_items", False):
            return None
        drain = getattr(self._model, "drain_touched", None)
        if drain is not None:
            touched |= drain()
        return np.array(sorted(touched), dtype=np.int64)

    def scores(self, user: int) -> np.ndarray:
        """Every item's score for ``user``: (n_items,) float, higher is better."""
        if hasattr(self._model, "scores_all"):
            return self._model.scores_all(user)
        return score_items(*self._model.ranking_inputs(user))

    def rank_counts(self, user: int, item: int, known: np.ndarray) -> tuple[int, int, int]:
        """(items scoring above ``item`` for ``user``, items level with it, candidates).

        ``known`` (int64) items are not candidates, except ``item`` itself:
        engine.evaluation.prequential.rank_of's counts, in one compiled pass.
        """
        if hasattr(self._model, "rank_counts"):
            return self._model.rank_counts(user, item, known)
        return count_rank(self.scores(user), item, known)

    def ranking_inputs(self, user: int | None):
        """(score rule, user row or None, item rows, item bias) for storage.ranking."""
        return self._model.ranking_inputs(user)

    def user_factors(self, users: np.ndarray) -> np.ndarray:
        """Exported rows of ``users``: (len(users), width) float32, copies."""
        return np.asarray(self._model.user_rows(np.asarray(users, dtype=np.int64)), np.float32)

    def export_items(self) -> tuple[np.ndarray, np.ndarray]:
        """(item rows (n_items, width) float32, item bias (n_items,) float32), copies."""
        rows, bias = self._model.export_items()
        return np.asarray(rows, dtype=np.float32), np.asarray(bias, dtype=np.float32)

    def item_rows(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """export_items() of ``items`` only: ((len(items), width), (len(items),)) float32."""
        items = np.asarray(items, dtype=np.int64)
        if hasattr(self._model, "item_rows"):
            rows, bias = self._model.item_rows(items)
        else:
            rows, bias = self._model.export_items()
            rows, bias = rows[items], bias[items]
        return np.asarray(rows, dtype=np.float32), np.asarray(bias, dtype=np.float32)

    def drift_rows(self) -> np.ndarray:
        """Rows whose relative change between checkpoints is the model's drift.

        The exported item rows for factor models; the hybrid's rows hold counts
        and neighbour indices, so it gives each item's share of every stage's likes.
        """
        if hasattr(self._model, "drift_rows"):
            return self._model.drift_rows()
        return self.export_items()[0]

    def export_params(self) -> dict:
        """Hyper-parameters plus, for models with shared arrays (fm, sketch), their values."""
        state = self._model.global_state()
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
        self._model.load_state(
            np.asarray(user_factors, dtype=np.float32),
            np.asarray(item_factors, dtype=np.float32),
            np.asarray(item_bias, dtype=np.float32),
            self._pending_state or {},
            histories,
        )


_NO_FEATURES = np.zeros(0)


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


__all__ = ["DEFAULT_MODEL", "DEFAULT_PARAMS", "MODELS", "Recommender"]
