"""The ranking rule shared by the engine and every reader of the store.

A model exports item factors ``V`` (n_items, k), an item bias ``b`` (n_items,)
and a score rule; a user is a vector ``u`` (k,). Higher scores rank first.
"""

from __future__ import annotations

import numpy as np

# dot:     u . V + b (BPR-MF, and models that add a per-item prior)
# mf:      -|1 - u . V| (FluRS's incremental MF, which fits u . v to 1 for positives)
# popular: b (the item's count of positive events; users play no part)
SCORE_RULES = ("dot", "mf", "popular")


def score_items(
    rule: str, user_vector: np.ndarray | None, item_factors: np.ndarray, item_bias: np.ndarray
) -> np.ndarray:
    """Score every item for one user; returns (n_items,) float, higher is better."""
    if rule == "popular" or user_vector is None:
        return item_bias.astype(np.float64, copy=True)
    dots = item_factors @ user_vector
    if rule == "dot":
        return dots + item_bias
    if rule == "mf":
        return -np.abs(1.0 - dots)
    raise ValueError(f"unknown score rule {rule!r}; expected one of {', '.join(SCORE_RULES)}")


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
