"""Prequential (test-then-learn) evaluation: where would the true item have ranked?"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

TOP_N = 10


def rank_of(
    scores: np.ndarray, true_item: int, known: Collection[int], rng: np.random.Generator
) -> tuple[int, int]:
    """Rank the true item among the candidates; return (0-based rank, number of candidates).

    Candidates are every item in ``scores`` except the user's ``known`` items,
    plus the true item itself. Ties are broken uniformly at random (seeded), so
    a model that scores everything alike ranks like chance, not like an oracle.
    No sort: counting the items that beat the true one is O(n_items).
    """
    target = scores[true_item]
    greater = int(np.count_nonzero(scores > target))
    ties = int(np.count_nonzero(scores == target)) - 1
    n_candidates = len(scores)
    if known:
        excluded = np.fromiter((i for i in known if i != true_item), dtype=np.int64)
        if len(excluded):
            excluded_scores = scores[excluded]
            greater -= int(np.count_nonzero(excluded_scores > target))
            ties -= int(np.count_nonzero(excluded_scores == target))
            n_candidates -= len(excluded)
    rank = greater + (int(rng.integers(ties + 1)) if ties > 0 else 0)
    return rank, n_candidates


def percentile_rank(rank: int, n_candidates: int) -> float:
    """rank / (candidates - 1) x 100: 0 is the best position, 100 the worst."""
    return 100.0 * rank / (n_candidates - 1) if n_candidates > 1 else 0.0
