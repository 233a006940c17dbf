"""What every model is: the Protocol the registry relies on, and the pieces models share.

FluRS wants dense indices registered in order, copies whole matrices for
every new user or item (np.concatenate), stores a dict per user and logs at
INFO on every MF update. The models here keep FluRS's recommender interface
(initialize, register, update, score, recommend) but keep their state in
growable float32 rows, so registering an id is amortised O(1).

Every model also speaks one export protocol, used for checkpoints and the
store: ``ranking_inputs(u)`` gives (score rule, user row, item rows, item
bias) for storage.ranking, ``user_rows``/``export_items`` copy the rows,
``global_state`` holds the few shared arrays that belong to no row, and
``load_state`` resumes from all of it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from storage import score_items

if TYPE_CHECKING:
    from flurs.data.entity import User

# Importing flurs attaches a DEBUG handler to its logger; route it through ours.
_flurs_logger = logging.getLogger("flurs")
for _handler in list(_flurs_logger.handlers):
    _flurs_logger.removeHandler(_handler)
_flurs_logger.setLevel(logging.WARNING)

INIT_STD = 0.1  # standard deviation of new factor rows


@runtime_checkable
class Model(Protocol):
    """One model, with dense indices: what engine.models.registry.Recommender drives.

    A model may also offer ``item_rows``, ``scores_all``, ``rank_counts``,
    ``drain_touched``, ``drift_rows`` and ``observe_run`` (the hybrid's
    compiled runs), and ``exports_all_items`` when every event moves every
    item's row; the registry uses them where they are.
    """

    score_rule: str  # how the store ranks by the exported rows (storage.ranking)

    def initialize(self) -> None:
        """Start empty."""

    def register(self, entity) -> None:
        """Register a flurs User or Item, whose index must be the next one."""

    def learn_one(self, u: int, i: int) -> None:
        """Learn that user ``u`` liked item ``i``."""

    def ranking_inputs(self, u: int | None) -> tuple:
        """(score rule, user row or None, item rows, item bias) for storage.ranking."""

    def user_rows(self, users: np.ndarray) -> np.ndarray:
        """Exported rows of ``users``: (len(users), width) float32."""

    def export_items(self) -> tuple[np.ndarray, np.ndarray]:
        """(item rows (n_items, width) float32, item bias (n_items,) float32)."""

    def global_state(self) -> dict[str, np.ndarray]:
        """Shared arrays that belong to no row (kept in the checkpoint's parameters)."""

    def load_state(self, user_rows, item_rows, item_bias, state, histories) -> None:
        """Resume from exported rows, ``global_state()`` and the users' histories."""


def check_dense(index: int, expected: int, kind: str) -> None:
    """Refuse an index registered out of order: FluRS's arrays are indexed by it."""
    if index != expected:
        raise IndexError(f"{kind} index {index} registered out of order (expected {expected})")


def no_columns(n: int) -> np.ndarray:
    """(n, 0) float32: the rows of a model that keeps no per-row vectors."""
    return np.zeros((n, 0), dtype=np.float32)


class DenseIndices:
    """FluRS's questions of a model whose users and items are 0..n-1 (``n_user``, ``n_item``)."""

    def is_new_user(self, u: int) -> bool:
        return u >= self.n_user

    def is_new_item(self, i: int) -> bool:
        return i >= self.n_item


class CountsOnlyRows:
    """Exports of a model whose only per-item state is a count (rule "popular").

    The model provides ``score_rule``, ``n_item`` and ``_item_counts``
    (GrowableRows of one value per item).
    """

    def ranking_inputs(self, u: int | None):
        return self.score_rule, None, no_columns(self.n_item), self._item_counts.view

    def user_rows(self, users: np.ndarray) -> np.ndarray:
        return no_columns(len(users))

    def export_items(self) -> tuple[np.ndarray, np.ndarray]:
        return no_columns(self.n_item), self._item_counts.view.copy()

    def item_rows(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return no_columns(len(items)), self._item_counts.view[items]

    def global_state(self) -> dict[str, np.ndarray]:
        return {}


class RanksByExportedRows:
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
