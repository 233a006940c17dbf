"""log(1 + x) from IEEE-754 basic operations only: the same bits on every CPU.

numpy chooses its log1p per CPU when it starts (SIMD code where AVX-512 is
found), and the C library's log1p, which compiled code calls, differs again:
one count could score 1.0986122886681098 in the store and 1.0986122886681096
in the engine, and a tie-break, a recall or a store lookup would depend on
the machine. Every logarithm that feeds a score comes from here instead.

The arithmetic is additions, subtractions, multiplications and divisions
only, each of which IEEE-754 rounds correctly, hence identically on every
x86-64 or ARM CPU, in numpy's ufuncs and in numba's compiled code alike
(compiled without fastmath, nothing is fused into an FMA or reordered), plus
frexp, which is exact. engine.kernels compiles log1p_reduced, the function
below that holds all of it, so the engine's and the store's logarithms are
one piece of code.

It works in double-double (about 104 bits): the result is the correctly
rounded log(1 + x) unless the exact value lies within about 2**-100 of a
halfway point between two floats, and every whole count in the table is
correctly rounded (tests/test_logarithm.py checks them all).
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np

# Whole counts 0 .. TABLE_SIZE - 1 read their logarithm from log1p_table().
TABLE_SIZE = 1 << 16
# Below this, log(1 + x) is x correctly rounded (x**2 / 2 is under a quarter ulp of x).
TINY = 2.0**-54
_BLOCK = 8192  # counts per log1p() call while building the table: its temporaries stay in cache


def _double_double(value: Fraction) -> tuple[float, float]:
    """(hi, lo) floats with hi + lo = ``value`` to about 106 bits."""
    hi = float(value)
    return hi, float(value - Fraction(hi))


_SQRT_HALF = 0.7071067811865476
_SPLIT = 134217729.0  # 2**27 + 1: Veltkamp's split of a float into two 26-bit halves
# ln 2 to 106 bits: the float nearest, and the float nearest the rest.
_LN2_HI = 0.6931471805599453
_LN2_LO = 2.3190468138462996e-17
# log z = 2 s R(s**2), R(w) = sum over k of w**k / (2k + 1) (atanh's series),
# with |s| <= 0.1716, so w <= 0.0295: the terms from k = 10 on are below
# 2**-50 and need only floats (highest first, for Horner), the first ten need
# double-double, and the terms after k = 19 are below 2**-106.
_TAIL = tuple(1.0 / (2 * k + 1) for k in range(19, 9, -1))
_HEAD = tuple(_double_double(Fraction(1, 2 * k + 1)) for k in range(9, -1, -1))


def log1p_reduced(x, hi, mantissa, exponent):
    """log(1 + x) given hi = 1 + x (rounded) and frexp(hi) = (mantissa, exponent), exponent a float.

    Plain arithmetic on floats or on numpy arrays alike, for finite x > -1
    with |x| >= TINY (below, log(1 + x) rounds to x itself, and the
    arithmetic would lose bits to underflow): numpy runs it on arrays
    (log1p), engine.kernels compiles it with numba for one float. Both then
    do the same operations in the same order.
    """
    # 1 + x = hi + lo exactly (Knuth's TwoSum).
    t = hi - 1.0
    lo = (1.0 - (hi - t)) + (x - t)
    # 1 + x = 2**e (m + low), m in [sqrt(1/2), sqrt(2)): doubling m and dividing
    # by a power of two (m / hi is 2**-e) are exact.
    below = (mantissa < _SQRT_HALF) * 1.0
    m = mantissa + mantissa * below
    e = exponent - below
    low = lo * (m / hi)
    # s = (z - 1) / (z + 1) for z = m + low, in double-double (s, s_lo).
    n = m - 1.0  # exact (Sterbenz)
    num = n + low
    t = num - n
    num_lo = (n - (num - t)) + (low - t)
    d = m + 1.0
    t = d - m
    d_lo = ((m - (d - t)) + (1.0 - t)) + low
    den = d + d_lo
    den_lo = d_lo - (den - d)
    s = num / den
    # s * den exactly as p + p_err (Dekker's product), for the remainder.
    c = _SPLIT * s
    s_h = c - (c - s)
    s_l = s - s_h
    c = _SPLIT * den
    den_h = c - (c - den)
    den_l = den - den_h
    p = s * den
    p_err = ((s_h * den_h - p) + s_h * den_l + s_l * den_h) + s_l * den_l
    s_lo = ((((num - p) - p_err) + num_lo) - s * den_lo) / den
    # w = s**2 in double-double.
    w = s * s
    w_lo = ((s_h * s_h - w) + 2.0 * (s_h * s_l)) + s_l * s_l + 2.0 * (s * s_lo)
    c = _SPLIT * w
    w_h = c - (c - w)
    w_l = w - w_h
    # R(w) by Horner: the small terms in floats, then the first ten in double-double.
    r = _TAIL[0]
    for k in range(1, len(_TAIL)):
        r = _TAIL[k] + w * r
    r_lo = 0.0
    for k in range(len(_HEAD)):
        c = _SPLIT * r
        r_h = c - (c - r)
        r_l = r - r_h
        p = w * r
        p_err = ((w_h * r_h - p) + w_h * r_l + w_l * r_h) + w_l * r_l
        p_err = p_err + (w * r_lo + w_lo * r)
        head, head_lo = _HEAD[k]
        total = head + p
        t = total - head
        total_lo = ((head - (total - t)) + (p - t)) + (head_lo + p_err)
        r = total + total_lo
        r_lo = total_lo - (r - total)
    # log z = 2 s R, and log(1 + x) = e log 2 + log z.
    c = _SPLIT * r
    r_h = c - (c - r)
    r_l = r - r_h
    p = s * r
    p_err = ((s_h * r_h - p) + s_h * r_l + s_l * r_h) + s_l * r_l
    log_z = 2.0 * p
    log_z_lo = 2.0 * (p_err + (s * r_lo + s_lo * r))
    c = _SPLIT * e
    e_h = c - (c - e)
    e_l = e - e_h
    c = _SPLIT * _LN2_HI
    ln2_h = c - (c - _LN2_HI)
    ln2_l = _LN2_HI - ln2_h
    q = e * _LN2_HI
    q_lo = (((e_h * ln2_h - q) + e_h * ln2_l + e_l * ln2_h) + e_l * ln2_l) + e * _LN2_LO
    total = q + log_z
    t = total - q
    total_lo = ((q - (total - t)) + (log_z - t)) + (q_lo + log_z_lo)
    return total + total_lo


def log1p(x) -> np.ndarray:
    """log(1 + x) of each element as float64, the same bits on every machine.

    ``x`` is anything numpy takes as floats; the result has its shape (a
    float64 scalar for a scalar). -1 gives -inf, below -1 or NaN gives NaN.

    >>> float(log1p(2.0))  # ln 3 correctly rounded; glibc's log1p gives 1.0986122886681096
    1.0986122886681098
    """
    x = np.asarray(x, dtype=np.float64)
    regular = (np.abs(x) >= TINY) & (x > -1.0) & (x < np.inf)
    safe = np.where(regular, x, 1.0)
    hi = 1.0 + safe
    mantissa, exponent = np.frexp(hi)
    result = log1p_reduced(safe, hi, mantissa, exponent.astype(np.float64))
    if not regular.all():
        result = np.where(regular, result, _edge(x))
    return result


def _edge(x: np.ndarray) -> np.ndarray:
    """log1p() where log1p_reduced() does not go: tiny, -1, infinite or NaN ``x``."""
    edge = np.where(x == -1.0, -np.inf, np.where(x == np.inf, np.inf, np.nan))
    return np.where(np.abs(x) < TINY, x, edge)


@functools.cache
def log1p_table() -> np.ndarray:
    """log1p() of the whole counts 0 .. TABLE_SIZE - 1: (TABLE_SIZE,) float64, read-only.

    Built on first use (about 15 ms) and shared by every caller: a lookup
    is the same value as log1p() of the count, only cheaper.
    """
    table = np.arange(TABLE_SIZE, dtype=np.float64)
    for start in range(0, TABLE_SIZE, _BLOCK):
        table[start : start + _BLOCK] = log1p(table[start : start + _BLOCK])
    table.flags.writeable = False
    return table


def log1p_counts(counts: np.ndarray) -> np.ndarray:
    """log1p() of an array of counts (any shape, any float dtype): the table for whole ones.

    Returns a new float64 array, bit for bit log1p(counts).
    """
    counts = np.asarray(counts)
    # NaN fails both bounds; whole counts within the table are the usual case.
    if counts.size and counts.min() >= 0 and counts.max() < TABLE_SIZE:
        index = counts.astype(np.intp)
        if (index == counts).all():
            return log1p_table()[index]
    values = counts.astype(np.float64)
    in_table = (values >= 0.0) & (values < TABLE_SIZE)
    index = np.where(in_table, values, 0.0).astype(np.intp)
    whole = in_table & (index == values)
    result = log1p_table()[index]
    result[~whole] = log1p(values[~whole])
    return result
