"""The ranking rule shared by the engine and every reader of the store.

A model exports item factors ``V`` (n_items, k), an item bias ``b`` (n_items,)
and a score rule; a user is a vector ``u`` (k,). Higher scores rank first.
"""

from __future__ import annotations

import bisect

import numpy as np

from storage._logarithm import log1p_counts

# dot:     u . V + b (BPR-MF, FM, sketch, and models that add a per-item prior)
# mf:      -|1 - u . V| (FluRS's incremental MF, which fits u . v to 1 for positives)
# popular: b (the item's count of positive events; users play no part)
# session: counts of positive events, overall, at the user's stage and next to
#          the user's last items (see session_scores)
SCORE_RULES = ("dot", "mf", "popular", "session")

# Stages of a user's life, by how many positive events they had before: the
# "session" rule counts each item's events per stage (0, 1, 2, 3-4, ..., 144+).
STAGE_EDGES = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144)
N_STAGES = len(STAGE_EDGES) + 1


def score_items(
    rule: str, user_vector: np.ndarray | None, item_factors: np.ndarray, item_bias: np.ndarray
) -> np.ndarray:
    """Score every item for one user; returns (n_items,) float, higher is better."""
    if rule == "popular" or user_vector is None:
        return item_bias.astype(np.float64, copy=True)
    if rule == "session":
        return session_scores(user_vector, item_factors, item_bias)
    dots = item_factors @ user_vector
    if rule == "dot":
        return dots + item_bias
    if rule == "mf":
        return -np.abs(1.0 - dots)
    raise ValueError(f"unknown score rule {rule!r}; expected one of {', '.join(SCORE_RULES)}")


def stage_of(n_events: int) -> int:
    """The stage (0 .. N_STAGES-1) of a user who had ``n_events`` positive events."""
    return bisect.bisect_right(STAGE_EDGES, n_events)


def session_scores(
    user_vector: np.ndarray, item_factors: np.ndarray, item_bias: np.ndarray
) -> np.ndarray:
    """The "session" rule: log-counts weighted by the user's stage and recent items.

    With S = N_STAGES, M neighbour slots (item width S + 2M) and R recent
    items (user width S + 2R; stores written before R was cut to the model's
    own need have R = M):

    - ``item_bias`` (n_items,): the item's positive events;
    - item row: [events per stage (S) | neighbour indices (M) | co-occurrence
      counts with them (M)] -- how often the item was liked close to each
      neighbour in someone's sequence;
    - user row: [weight per stage (S) | indices of the user's last items (R) |
      their weights (R)], zero weights in unused slots.

    score(j) = log(1 + b_j) + sum_s u_s log(1 + stage_counts[j, s])
             + sum_l w_l log(1 + count of j among neighbours of recent item l),
    every log(1 + c) storage.log1p's, the engine's to the bit on any CPU.
    Indices are stored as float32, exact below 2**24 items. Returns (n_items,) float64.
    """
    n_items, width = item_factors.shape
    m = (width - N_STAGES) // 2
    r = (len(user_vector) - N_STAGES) // 2
    scores = log1p_counts(item_bias)
    for stage in np.flatnonzero(user_vector[:N_STAGES]).tolist():
        scores += float(user_vector[stage]) * log1p_counts(item_factors[:, stage])
    weights = user_vector[N_STAGES + r :].astype(np.float64)
    active = np.flatnonzero(weights)
    if len(active) and n_items:
        recent = item_factors[user_vector[N_STAGES + active].astype(np.int64)]
        neighbours = recent[:, N_STAGES : N_STAGES + m].astype(np.int64)
        counts = log1p_counts(recent[:, N_STAGES + m :]) * weights[active, None]
        scores += np.bincount(neighbours.ravel(), weights=counts.ravel(), minlength=n_items)
    return scores


def top_n(
    scores: np.ndarray, n: int, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return the indices and scores of the ``n`` best items, best first.

    ``exclude`` holds item indices never to return (a user's seen items). Ties go
    to the lower index, so the order is deterministic. Runs in O(n_items): the
    catalogue is partitioned, only the winners are sorted.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if exclude is not None and len(exclude):
        scores = scores.copy()
        scores[exclude] = -np.inf
    available = int(np.count_nonzero(scores > -np.inf))
    n = min(n, available)
    if n <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    if n < len(scores):
        # Take everything tied with the n-th best too, so the tie-break is exact.
        kth = np.partition(scores, len(scores) - n)[len(scores) - n]
        candidates = np.flatnonzero(scores >= kth)
    else:
        candidates = np.arange(len(scores))
    order = np.lexsort((candidates, -scores[candidates]))[:n]
    best = candidates[order]
    return best.astype(np.int64), scores[best]
