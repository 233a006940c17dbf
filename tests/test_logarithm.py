"""Scores take their logarithms from one function that gives the same bits on every CPU."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import numpy as np

from storage import log1p, log1p_counts, log1p_table, logarithm

# Where numpy's and the C library's log1p disagree on this machine and others:
# the correctly rounded log(3) is numpy's here, libm's is one bit below.
LOG_3 = 1.0986122886681098


def _exact_log1p(x: float) -> float:
    """log(1 + x) correctly rounded, from decimal at 60 digits."""
    with localcontext() as context:
        context.prec = 60
        d = Decimal(x)
        if abs(d) < Decimal("1e-3"):  # the series, where 1 + x would drop x's digits
            return float(sum((-1) ** (k + 1) * d**k / k for k in range(1, 40)))
        return float((d + 1).ln())


def _sweep() -> np.ndarray:
    """Counts and other floats: whole, halves, beyond the table, tiny, huge, negative."""
    rng = np.random.default_rng(13)
    return np.concatenate(
        [
            np.arange(0.0, 70_000.0, 0.5),
            rng.uniform(0, 1e7, 3000).astype(np.float32).astype(np.float64),
            10.0 ** rng.uniform(-17, 308, 3000),
            -(10.0 ** rng.uniform(-17, -1e-9, 1000)),
            [2.0**-54, 2.0**-53, 1e-300, 5e-324, -5e-324, -(2.0**-54), 1.7976931348623157e308],
            [0.0, -0.0, -0.9999999999999999, 2.0**24, 2.0**53, 2.0**1023],
        ]
    )


def test_log1p_of_2_is_log_3_correctly_rounded():
    assert float(log1p(2.0)) == LOG_3
    assert log1p_table()[2] == LOG_3


def test_the_table_and_log1p_counts_are_log1p_bit_for_bit():
    table = log1p_table()
    whole = np.arange(len(table), dtype=np.float64)
    np.testing.assert_array_equal(table.view(np.int64), log1p(whole).view(np.int64))
    x = _sweep()
    counts = np.abs(x[np.abs(x) < 1e38]).astype(np.float32)
    want = log1p(counts.astype(np.float64))
    np.testing.assert_array_equal(log1p_counts(counts).view(np.int64), want.view(np.int64))


def test_log1p_is_correctly_rounded_on_a_sweep():
    x = _sweep()[::7]
    want = np.array([_exact_log1p(float(v)) for v in x])
    got = log1p(x)
    wrong = np.flatnonzero(got != want)
    assert wrong.size == 0, [(x[i], got[i], want[i]) for i in wrong[:5]]


def test_every_whole_count_in_the_table_is_correctly_rounded():
    # ln(n) for n = 1 .. TABLE_SIZE to 34 digits: about 2 s.
    with localcontext() as context:
        context.prec = 34
        want = np.array([float(Decimal(n).ln()) for n in range(1, logarithm.TABLE_SIZE + 1)])
    np.testing.assert_array_equal(log1p_table(), want)


def test_edges_are_those_of_log1p():
    x = np.array([-1.0, -2.0, np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-300, -1e-300])
    want = np.array([-np.inf, np.nan, np.inf, np.nan, np.nan, 0.0, -0.0, 1e-300, -1e-300])
    np.testing.assert_array_equal(log1p(x), want)
    assert math.copysign(1.0, log1p(-0.0)) == -1.0
    assert log1p_counts(np.array([[70_000.5, 2.0], [np.nan, -3.0]])).shape == (2, 2)
