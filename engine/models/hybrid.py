"""The engine's default model: popularity, the user's stage, and items liked next to the user's.

An item's score for a user (storage.ranking's rule "session") adds
log-counts, all learned one event at a time:

- how often the item was liked among the latest ``popularity_window``
  positive events (recent popularity: what is liked changes as a catalogue
  ages, and a stream has no end; 0 counts every like ever);
- how often it was liked by users at the same stage, i.e. with as many
  positive events behind them -- what newcomers like differs from what
  regulars like -- weighted by ``stage_weight``;
- how often it was liked within ``window`` events of each of the user's
  items in someone's sequence. People rate in sessions, so the user's last
  ``context`` items count most (``co_weight``, newest first by ``decay``);
  the last ``profile`` items count too, evenly (``profile_weight``), like an
  item-to-item neighbourhood over the user's taste.

Co-occurrence is kept as at most ``neighbours`` counters per item
(Space-Saving: a new neighbour replaces the weakest and inherits its count
plus one), so memory is O(items x neighbours) whatever the stream's length,
and the state is the rows the store keeps plus the ring of the latest
likes (``global_state``): a reader ranks from a checkpoint exactly like the
engine, and a restored engine continues exactly.

Learning an event touches a handful of values, and evaluating one sums the
neighbour rows of the user's recent items onto a per-stage base score kept
up to date per event: both run as compiled loops (engine.kernels), with no
allocation, no sort and no pass over the catalogue but the one that counts
the items above the true one. The engine hands over a run of events at a
time (observe_run), with its histories and baseline, so that no Python
runs between one event and the next.

The class keeps the FluRS recommender interface (initialize, register,
update, score, recommend) without importing FluRS.

>>> from types import SimpleNamespace as Entity
>>> model = HybridRecommender(neighbours=4, profile=4)
>>> model.initialize()
>>> for index in range(3):
...     model.register_item(Entity(index=index))
>>> model.register_user(Entity(index=0))
>>> model.update(Entity(user=Entity(index=0), item=Entity(index=2)))
>>> int(np.argmax(model.scores_all(0)))
2
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from engine.kernels import session_apply, session_observe, session_rank, session_run
from engine.models.base import DenseIndices, check_dense
from engine.models.baseline import PopularityCounts
from engine.models.growable import GrowableRows
from engine.models.history import UserHistory
from engine.models.hybrid_rows import HybridRows
from storage import N_STAGES, STAGE_EDGES, log1p_counts, log1p_table, stage_of


class HybridRecommender(DenseIndices, HybridRows):
    """Counts of positive events by item, by user stage and by sequence neighbourhood.

    ``known_items(u)`` returns the user's positive items, oldest first (the
    engine's per-user history): it gives the user's stage and items.
    """

    score_rule = "session"
    exports_all_items = False  # an event changes the rows of a few items only

    def __init__(
        self,
        window: int = 3,
        context: int = 3,
        decay: float = 0.5,
        co_weight: float = 5.0,
        profile: int = 20,
        profile_weight: float = 8.0,
        stage_weight: float = 0.5,
        neighbours: int = 128,
        popularity_window: int = 300,
        known_items: Callable[[int], dict] | None = None,
    ):
        if not (1 <= context <= neighbours and 0 <= profile <= neighbours and window >= 1):
            raise ValueError(
                f"context ({context}) and profile ({profile}) must fit in neighbours "
                f"({neighbours}), and window ({window}) be at least 1"
            )
        if popularity_window < 0:
            raise ValueError(
                f"popularity_window ({popularity_window}) must be a number of events "
                "(0 counts every like ever)"
            )
        self.window = window
        self.context = context
        self.decay = decay
        self.co_weight = co_weight
        self.profile = profile
        self.profile_weight = profile_weight
        self.stage_weight = stage_weight
        self.neighbours = neighbours
        self.popularity_window = popularity_window
        self._known_items = known_items or (lambda u: {})
        # Items of a user row, and items read from the history per event.
        self._row_items = max(context, profile)
        self._newest_items = max(window, context, profile)
        # The store keeps weights as float32; ranking uses exactly those values.
        self._stage_weight = float(np.float32(stage_weight))
        self._tables()

    def _tables(self) -> None:
        """Weights per number of active items (a prefix of the user's newest items).

        Which of a user's r newest items carry weight, and how much, depends
        on r only; the weighted ones are always the first ``a`` and their
        weights depend on ``a`` only, so a user's state is ``a`` and its items.
        """
        r_max = self._row_items
        active_of = []  # r -> a
        by_active: dict[int, np.ndarray] = {}
        for r in range(r_max + 1):
            weights = self._item_weights(r)
            active = np.flatnonzero(weights)
            a = len(active)
            if not np.array_equal(active, np.arange(a)):
                raise ValueError("item weights must be a prefix of the user's newest items")
            previous = by_active.setdefault(a, weights[:a])
            if not np.array_equal(previous, weights[:a]):
                raise ValueError(f"weights of {a} active items depend on more than their count")
            active_of.append(a)
        self._active_of = np.array(active_of, dtype=np.int64)
        padded = np.zeros((r_max + 1, r_max), dtype=np.float32)
        for a, w in by_active.items():
            padded[a, :a] = w
        self._weights32 = padded  # (r_max + 1, r_max): row a holds the weights of a items
        self._weights64 = padded.astype(np.float64)  # the same, for ranking: row a, first a

    def _item_weights(self, n: int) -> np.ndarray:
        """(n,) float32 weights of a user's n newest items, newest first."""
        weights = np.zeros(n)
        recent = min(n, self.context)
        if recent:
            # decay**k as a running product: numpy's power is CPU-specific code
            # (SIMD on AVX-512), a product rounds alike everywhere.
            decayed = np.ones(recent)
            decayed[1:] = np.cumprod(np.full(recent - 1, self.decay))
            weights[:recent] = self.co_weight * decayed / decayed.sum()
        profile = min(n, self.profile)
        if profile:
            weights[:profile] += self.profile_weight / profile
        return weights.astype(np.float32)

    # -- the FluRS interface -------------------------------------------------

    def initialize(self) -> None:
        self.n_user = 0
        self.n_item = 0
        m, s = self.neighbours, N_STAGES
        # Per user: stage, number of weighted items, and those items, newest first.
        self._stage = GrowableRows(0, dtype=np.int8)
        self._n_active = GrowableRows(0, dtype=np.int16)
        self._recent = GrowableRows(self._row_items, dtype=np.int32)
        # Per item: positive events among the latest likes, and ever per user stage.
        self._counts = GrowableRows(0)
        # The latest likes' items, a ring: [next slot, slots filled] in _likes_state.
        self._likes = np.zeros(self.popularity_window, dtype=np.int32)
        self._likes_state = np.zeros(2, dtype=np.int64)
        self._stage_counts = GrowableRows(s)
        self._log_stages = GrowableRows(s, dtype=np.float64)
        # log(1 + count) + stage_weight * log(1 + stage count): the score of
        # every item for a user at each stage with no recent items, kept per
        # event. Stage-major, (S, capacity), so that ranking reads one row.
        self._base = np.zeros((s, 1024))
        # Neighbours: index + 1 (0 in unused slots, which ranking drops with
        # bin 0 of its bincount) and counts.
        self._neighbour_ids = GrowableRows(m, dtype=np.int32)
        self._neighbour_counts = GrowableRows(m)
        self._filled = GrowableRows(0, dtype=np.int32)  # used slots per item (filled in order)
        # 1 for items whose rows changed since the last drain, set by the compiled step.
        self._touched = GrowableRows(0, dtype=np.uint8)
        # log(1 + c) of whole counts c, and 1 once a neighbour count may be beyond them.
        self._log1p = log1p_table()
        self._large_counts = np.zeros(1, dtype=np.uint8)
        self._newest_buffer = np.zeros(max(self._newest_items, 1), dtype=np.int64)
        self._scratch = np.zeros(1025)  # (n_items + 1,) zeros for session_rank
        self._bind()

    def _bind(self) -> None:
        """Collect the item buffers the compiled loops take, after any of them grew."""
        self._item_buffers = (
            self._counts.buffer,
            self._stage_counts.buffer,
            self._log_stages.buffer,
            self._base,
            self._neighbour_ids.buffer,
            self._neighbour_counts.buffer,
            self._filled.buffer,
            self._touched.buffer,
            self._large_counts,
        )

    def register(self, actor) -> None:
        """Register a flurs User or Item (told apart by class name: FluRS is not imported)."""
        if type(actor).__name__ == "User":
            self.register_user(actor)
        else:
            self.register_item(actor)

    def register_user(self, user) -> None:
        check_dense(user.index, self.n_user, "user")
        for rows in (self._stage, self._n_active, self._recent):
            rows.append(0)
        self.n_user += 1

    def register_item(self, item) -> None:
        check_dense(item.index, self.n_item, "item")
        for rows in (
            self._counts,
            self._stage_counts,
            self._log_stages,
            self._neighbour_ids,
            self._neighbour_counts,
            self._filled,
            self._touched,
        ):
            rows.append(0)
        self.n_item += 1
        if self.n_item > self._base.shape[1]:
            grown = np.zeros((N_STAGES, 2 * self._base.shape[1]))
            grown[:, : self._base.shape[1]] = self._base
            self._base = grown
            self._scratch = np.zeros(grown.shape[1] + 1)
        self._bind()

    def update(self, e, batch_train: bool = False) -> None:
        self.learn_one(e.user.index, e.item.index)

    def score(self, user, candidates: np.ndarray) -> np.ndarray:
        """Scores of ``candidates`` for ``user``, higher is better."""
        return self.scores_all(user.index)[candidates]

    def recommend(self, user, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores = self.score(user, candidates)
        order = np.argsort(-scores, kind="stable")
        return candidates[order], scores[order]

    # -- learning ------------------------------------------------------------

    def learn_one(self, u: int, i: int) -> None:
        """Learn one positive event, user ``u`` liked item ``i``, in one compiled call.

        The FluRS interface's step (``update``, and the evaluator's extra
        training epochs): the model learns, and nothing else; the engine's
        stream goes through observe_run(). ``known_items(u)`` is the user's
        history before this event.
        """
        known = self._known_items(u)
        n_known = len(known)
        in_known = i in known
        n_newest = min(self._newest_items, n_known - in_known)
        # The user's row: ``i``, then the newest items, as many as carry weight.
        active = int(self._active_of[min(1 + n_newest, self._row_items)])
        a = int(self._n_active.flat[u])
        session_observe(
            False,
            self.n_item,
            self._stage.flat[u],
            a,
            self._weights64[a, :a],
            self._log1p,
            self._scratch,
            _NO_COUNTS,
            i,
            stage_of(n_known),
            self._newest_known(known),
            n_newest,
            self._newest_buffer,
            self.window,
            self._stage_weight,
            *self._item_buffers,
            self._recent.buffer[u],
            active,
            self._likes,
            self._likes_state,
        )
        self._stage.flat[u] = stage_of(n_known + (not in_known))
        self._n_active.flat[u] = active

    def observe_run(
        self,
        users: np.ndarray,
        items: np.ndarray,
        n_items: np.ndarray,
        evaluate: np.ndarray,
        times: np.ndarray,
        seqs: np.ndarray,
        history: UserHistory,
        popularity: PopularityCounts,
        shared: np.ndarray | None = None,
    ) -> np.ndarray:
        """Test-then-learn a run of positive events in one compiled call, in order.

        Per event rank_counts() (where evaluated), learn_one()'s step, and
        the engine's own bookkeeping (the baseline's count, the user's
        history), so that no Python runs between events: a few us of
        dispatch for the run instead of some 15 us of Python per event.
        Ids are registered first; ``n_items[e]`` is how many items there
        were when event ``e`` was registered. Returns (len(users), 5) int64:
        per evaluated event rank_counts() with the baseline's greater
        and ties (already corrected for the user's known items).
        ``shared`` ((len(users), shared_width) int64), where given, gets each
        event's increment of the item statistics, for apply_shared() on the
        other workers of a deployment.
        """
        results = np.zeros((len(users), 5), dtype=np.int64)
        if shared is None:
            shared = np.zeros((len(users), self.shared_width), dtype=np.int64)
        history.reserve(self.n_user, len(users))
        popularity.reserve(len(users))
        done = 0
        while True:
            done = session_run(
                users,
                items,
                evaluate,
                times,
                seqs,
                done,
                results,
                n_items,
                self.n_item,
                self._stage.buffer,
                self._n_active.buffer,
                self._active_of,
                self._weights64,
                self._newest_items,
                self._row_items,
                STAGE_EDGES_ARRAY,
                self._log1p,
                self._scratch,
                self._newest_buffer,
                self.window,
                self._stage_weight,
                *self._item_buffers,
                self._recent.buffer,
                self._likes,
                self._likes_state,
                popularity.counts,
                popularity.at,
                popularity.above,
                popularity.state,
                *history.kernel_arrays(),
                shared,
            )
            if done == len(users):
                return results
            history.grow_pool()

    @property
    def shared_width(self) -> int:
        """Columns of an event's increment: stage, paired items, up to ``window`` of them."""
        return 2 + self.window

    def apply_shared(
        self, items: np.ndarray, shared: np.ndarray, popularity: PopularityCounts
    ) -> None:
        """Add other workers' events (observe_run()'s ``shared`` rows) to the item statistics.

        Counts and stage counts add exactly; co-occurrences go through the
        same Space-Saving rows (a count is over by at most the row's total
        over ``neighbours``, as for this worker's own events); the items join
        the latest likes in the order they arrive. The baseline counts them too.
        """
        popularity.reserve(len(items))
        scratch = np.zeros(max(self.window, 1), dtype=np.int64)
        session_apply(
            np.asarray(items, dtype=np.int64),
            np.asarray(shared, dtype=np.int64),
            self.window,
            self._stage_weight,
            self._log1p,
            *self._item_buffers,
            self._likes,
            self._likes_state,
            scratch,
            scratch.copy(),
            _NO_ROW,
            popularity.counts,
            popularity.at,
            popularity.above,
            popularity.state,
        )

    def adopt_user(self, u: int, items: np.ndarray) -> None:
        """Set user ``u``'s row from their history (item indices, oldest first).

        The row learn_one() leaves after the last of them: the stage of as
        many items, and the newest items that carry weight, newest first. A
        user whose partition moved to this worker continues from it.
        """
        n = len(items)
        active = int(self._active_of[min(n, self._row_items)]) if n else 0
        self._stage.flat[u] = stage_of(n) if n else 0
        self._n_active.flat[u] = active
        self._recent.buffer[u, :active] = np.asarray(items)[::-1][:active]

    def _newest_known(self, known: dict) -> np.ndarray:
        """The items learn_one() learns from: the newest of ``known``, as int64."""
        n = self._newest_items + 1
        if isinstance(known, np.ndarray):
            return known[-n:].astype(np.int64)
        if len(known) <= n:
            return np.fromiter(known, dtype=np.int64, count=len(known))
        newest = list(itertools.islice(reversed(known), n))
        newest.reverse()
        return np.array(newest, dtype=np.int64)

    # -- ranking -------------------------------------------------------------

    def scores_all(self, u: int) -> np.ndarray:
        """Every item's score for user ``u``: (n_items,) float64, a new array.

        The same arithmetic as storage.ranking.session_scores on the exported
        rows, the base scores taken from the per-event cache (whose logarithms
        are storage.log1p's too).
        """
        base = self._base[self._stage.flat[u], : self.n_item]
        a = int(self._n_active.flat[u])
        if not a:
            return base.copy()
        recent = self._recent.view[u, :a]
        neighbours = self._neighbour_ids.view[recent]  # index + 1; bin 0 is unused slots
        weighted = log1p_counts(self._neighbour_counts.view[recent])
        weighted *= self._weights64[a, :a, None]
        near = np.bincount(neighbours.ravel(), weights=weighted.ravel(), minlength=self.n_item + 1)
        return base + near[1:]

    def rank_counts(self, u: int, item: int, known: np.ndarray) -> tuple[int, int, int]:
        """(items above ``item`` for ``u``, items level with it, candidates), ``known`` left out.

        The counts engine.kernels.count_rank gives on scores_all(u), without
        building the scores.
        """
        a = int(self._n_active.flat[u])
        return session_rank(
            self.n_item,
            self._base[self._stage.flat[u]],
            self._recent.buffer[u, :a],
            self._weights64[a, :a],
            self._neighbour_ids.buffer,
            self._neighbour_counts.buffer,
            self._log1p,
            self._large_counts,
            self._scratch,
            item,
            known,
        )


STAGE_EDGES_ARRAY = np.array(STAGE_EDGES, dtype=np.int64)  # stage_of() in compiled runs
_NO_COUNTS = np.zeros(0, dtype=np.float32)  # learn_one() ranks nothing against the baseline
_NO_ROW = np.zeros(0, dtype=np.int32)  # apply_shared() writes no user's row
