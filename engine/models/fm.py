"""Factorisation machines on a stream, each id with its own row."""

from __future__ import annotations

import numpy as np
from flurs.data.entity import Event, Item, User
from flurs.recommender.factorization_machine import FMRecommender

from engine.models.base import (
    INIT_STD,
    DenseIndices,
    RanksByExportedRows,
    check_dense,
)
from engine.models.growable import GrowableRows

# -- factorisation machines ------------------------------------------------------------


class StreamingFM(DenseIndices, RanksByExportedRows, FMRecommender):
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

    def register_user(self, user: User) -> None:
        check_dense(user.index, self.n_user, "user")
        self._users.append(
            np.concatenate([self._rng.normal(0.0, INIT_STD, self.k), [0.0], user.feature])
        )
        self.n_user += 1

    def register_item(self, item: Item) -> None:
        check_dense(item.index, self.n_item, "item")
        self._items.append(
            np.concatenate([self._rng.normal(0.0, INIT_STD, self.k), [0.0], item.feature])
        )
        self.n_item += 1

    def update(self, e: Event, batch_train: bool = False) -> None:
        self.learn_one(e.user.index, e.item.index)

    def learn_one(self, u: int, i: int) -> None:
        self.update_model(u, i)

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
