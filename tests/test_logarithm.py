"""Scores take their logarithms from one function that gives the same bits on every CPU."""

from __future__ import annotations

import ast
import math
import re
from decimal import Decimal, localcontext

import numba
import numpy as np
import pytest

from engine import kernels
from storage import log1p, log1p_counts, log1p_table, logarithm
from tests.support.paths import REPO

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


def _compiled(values: np.ndarray) -> np.ndarray:
    """engine.kernels.log1p of each value, one compiled call each."""
    return np.array([kernels.log1p(float(x)) for x in values])


def test_log1p_of_2_is_log_3_correctly_rounded():
    assert float(log1p(2.0)) == LOG_3
    assert log1p_table()[2] == LOG_3
    assert kernels.log1p(2.0) == LOG_3


def test_the_table_and_log1p_counts_are_log1p_bit_for_bit():
    table = log1p_table()
    whole = np.arange(len(table), dtype=np.float64)
    np.testing.assert_array_equal(table.view(np.int64), log1p(whole).view(np.int64))
    x = _sweep()
    counts = np.abs(x[np.abs(x) < 1e38]).astype(np.float32)
    want = log1p(counts.astype(np.float64))
    np.testing.assert_array_equal(log1p_counts(counts).view(np.int64), want.view(np.int64))


def test_engine_and_store_logarithms_agree_bit_for_bit():
    x = _sweep()
    np.testing.assert_array_equal(_compiled(x).view(np.int64), log1p(x).view(np.int64))
    # Counts as the engine keeps them (float32): the table where they are
    # whole and within it, the compiled function elsewhere.
    counts = np.abs(x[np.abs(x) < 1e38]).astype(np.float32)
    table = log1p_table()
    engine = np.array([kernels.log1p_count(table, count) for count in counts])
    want = log1p(counts.astype(np.float64))
    np.testing.assert_array_equal(engine.view(np.int64), want.view(np.int64))


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
    np.testing.assert_array_equal(_compiled(x), want)
    assert math.copysign(1.0, log1p(-0.0)) == math.copysign(1.0, kernels.log1p(-0.0)) == -1.0
    assert log1p_counts(np.array([[70_000.5, 2.0], [np.nan, -3.0]])).shape == (2, 2)


# Modules whose arithmetic makes a score (the hybrid's and the store's rule),
# and the functions that numpy or libm compute with CPU-specific code.
SCORE_MODULES = (
    *sorted(str(path.relative_to(REPO)) for path in (REPO / "engine" / "kernels").glob("*.py")),
    "engine/models/hybrid.py",
    "engine/models/hybrid_rows.py",
    "storage/ranking.py",
)
CPU_SPECIFIC = {
    "log", "log1p", "log2", "log10", "exp", "expm1", "exp2", "power", "pow", "float_power",
    "logaddexp", "logaddexp2", "sin", "cos", "tan", "sinh", "cosh", "tanh", "arctan", "atan",
}  # fmt: skip


@pytest.mark.parametrize("module", SCORE_MODULES)
def test_no_score_path_calls_numpys_or_libms_transcendental_functions(module):
    tree = ast.parse((REPO / module).read_text())
    calls = [
        f"{node.value.id}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in {"np", "numpy", "math"}
        and node.attr in CPU_SPECIFIC
    ]
    powers = [  # x ** y is numpy's power (or libm's pow) too
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.BinOp | ast.AugAssign) and isinstance(node.op, ast.Pow)
    ]
    assert calls == [] and powers == []


# A fused multiply-add rounds once where IEEE-754 arithmetic rounds twice: any
# in the compiled code (x86 vfmadd..., ARM fmadd/fmla) or any fast-math flag
# that allows one would make scores depend on the CPU and the compiler.
FUSED = re.compile(r"\bv?fn?m(?:add|sub)\w*|\bfml[as]\b")
FAST_MATH = re.compile(r"llvm\.fmuladd|llvm\.fma\.|\b(?:fast|contract|reassoc|afn)\b")


@pytest.mark.parametrize("kernel", ["log1p_count", "session_observe"])
def test_compiled_scores_have_no_fused_multiply_add_and_no_library_logarithm(kernel):
    kernels.warm_up()
    dispatcher = getattr(kernels, kernel)
    fresh = numba.njit(dispatcher.py_func)  # compiled afresh: cached code cannot be inspected
    for signature in dispatcher.signatures:
        fresh.compile(signature)
    assert fresh.signatures
    for signature in fresh.signatures:
        assembly, ir = fresh.inspect_asm(signature), fresh.inspect_llvm(signature)
        assert ir.count("fmul") > 100  # storage's log1p arithmetic is in there
        assert not FUSED.findall(assembly)
        assert not FAST_MATH.findall(ir)
        assert not re.findall(r"declare [^\n]*@(?:llvm\.)?log", ir)
