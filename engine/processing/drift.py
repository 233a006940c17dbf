"""Drift measures between two checkpoints of the model."""

from __future__ import annotations

import numpy as np


def factor_change(previous: np.ndarray, current: np.ndarray) -> float | None:
    """Relative change of the item factors: ||V_now - V_prev||_F / ||V_prev||_F.

    Only items that existed at the previous checkpoint count; new items are
    growth, not drift. None when there is nothing to compare.
    """
    n = min(len(previous), len(current))
    if n == 0 or previous.size == 0:
        return None
    norm = float(np.linalg.norm(previous[:n]))
    if norm == 0.0:
        return None
    return float(np.linalg.norm(current[:n] - previous[:n])) / norm


def mean_jaccard(
    previous: dict[int, frozenset[int]], current: dict[int, frozenset[int]]
) -> float | None:
    """Mean Jaccard overlap of the top-N lists of users present in both panels."""
    common = previous.keys() & current.keys()
    if not common:
        return None
    total = 0.0
    for user in common:
        a, b = previous[user], current[user]
        union = len(a | b)
        total += len(a & b) / union if union else 1.0
    return total / len(common)
