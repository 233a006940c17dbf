"""Ranking in compiled code: where the true item ranks, and the top n of a score vector."""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels._compile import COMPILE


@njit(**COMPILE)
def count_rank(scores, item, known):  # pragma: no cover - compiled
    """(items scoring above ``item``, items level with it, candidates), known items left out.

    ``scores`` (n_items,) float, ``known`` (k,) int64 item indices (the true
    item among them stays a candidate). Equals rank_of's counts.
    """
    target = scores[item]
    greater = 0
    ties = -1  # the item itself
    for j in range(scores.shape[0]):
        value = scores[j]
        if value > target:
            greater += 1
        elif value == target:
            ties += 1
    candidates = scores.shape[0]
    for j in known:
        if j == item:
            continue
        value = scores[j]
        if value > target:
            greater -= 1
        elif value == target:
            ties -= 1
        candidates -= 1
    return greater, ties, candidates


@njit(**COMPILE)
def known_above(values, item, known):  # pragma: no cover - compiled
    """(known items above ``item``, known items level with it), the item itself left out."""
    target = values[item]
    greater = 0
    ties = 0
    for j in known:
        if j == item:
            continue
        value = values[j]
        if value > target:
            greater += 1
        elif value == target:
            ties += 1
    return greater, ties


@njit(**COMPILE)
def _best_n(scores, n, best, best_scores):  # pragma: no cover - compiled
    """Fill ``best`` with the indices of the ``n`` best finite-or-+inf scores; returns how many.

    One pass keeping a sorted buffer of n: an item enters only if it beats
    the buffer's last, so most of a large catalogue costs one comparison.
    Ties go to the lower index, as storage.ranking.top_n (an equal score
    later in the array never displaces an earlier one). -inf is unavailable.
    """
    size = 0
    for i in range(scores.shape[0]):
        value = scores[i]
        if value == -np.inf or value != value:  # excluded, or NaN
            continue
        if size == n:
            if value <= best_scores[n - 1]:
                continue
            slot = n - 1
        else:
            slot = size
            size += 1
        while slot > 0 and best_scores[slot - 1] < value:
            best_scores[slot] = best_scores[slot - 1]
            best[slot] = best[slot - 1]
            slot -= 1
        best_scores[slot] = value
        best[slot] = i
    return size


def top_n(
    scores: np.ndarray, n: int, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """storage.ranking.top_n's answer (same items, order and scores) in one compiled pass.

    It runs on every live API request and for the drift panel's 50 lists at
    every checkpoint. Measured here: 3.5 us against 13 us for 1,447 items,
    0.12-0.22 ms against 0.29-0.36 ms for 98,000.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if exclude is not None and len(exclude):
        scores = scores.copy()
        scores[exclude] = -np.inf
    n = max(0, min(n, len(scores)))
    best = np.empty(n, dtype=np.int64)
    best_scores = np.empty(n, dtype=np.float64)
    size = _best_n(scores, n, best, best_scores) if n else 0
    return best[:size], best_scores[:size]
