"""log(1 + count) in compiled code: the table of whole counts, else storage's log1p compiled."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from engine.kernels._compile import COMPILE
from storage import logarithm

# numba caches a kernel by its own file's date: after editing
# storage/_logarithm.py, clear engine/kernels/__pycache__ so that the kernels pick it up
# (tests/test_logarithm.py fails on a stale cache).
_log1p_reduced = njit(**COMPILE)(logarithm.log1p_reduced)


@njit(**COMPILE)
def log1p(x):  # pragma: no cover - compiled
    """storage.log1p of one float64, compiled: the same bits."""
    if not (math.fabs(x) >= logarithm.TINY and -1.0 < x < np.inf):
        if math.fabs(x) < logarithm.TINY:
            return x
        if x == -1.0:
            return -np.inf
        return np.inf if x == np.inf else np.nan
    hi = 1.0 + x
    mantissa, exponent = math.frexp(hi)
    return _log1p_reduced(x, hi, mantissa, np.float64(exponent))


@njit(**COMPILE)
def log1p_count(table, count):  # pragma: no cover - compiled
    """storage.log1p of a (float32) count as float64: ``table`` (log1p_table) for whole ones."""
    if 0.0 <= count < table.shape[0]:
        whole = int(count)
        if whole == count:
            return table[whole]
    return log1p(np.float64(count))
