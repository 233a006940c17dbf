"""Compiled per-event loops: ranking the true item, and the hybrid's learning step.

Per event the engine touches a few hundred values; through numpy that is a
dozen calls of about a microsecond of overhead each, so these loops are
compiled with numba instead (compiled once, cached on disk next to this
file). Each one does in one pass what the numpy code it replaces did in
several, with the same floating-point operations in the same order: results
are bit-identical (tests/test_kernels.py compares them with the numpy
reference, storage.ranking).

No fastmath: reassociating or fusing the arithmetic would change scores in
their last bits, and with them tie-breaks and recall. For the same reason no
logarithm here comes from the C library or numpy, whose log1p differ between
CPUs: every one is storage's log1p, from the table of whole counts
(storage.log1p_table, passed in as ``table``) or compiled from its very
arithmetic (storage._logarithm.log1p_reduced).
"""

from __future__ import annotations

import numpy as np

from engine.kernels.counts import history_add, history_room, popularity_add
from engine.kernels.logarithm import log1p, log1p_count
from engine.kernels.ranking import count_rank, known_above, top_n
from engine.kernels.session import (
    learn_session,
    session_apply,
    session_observe,
    session_rank,
    session_run,
)
from storage import log1p_table


def warm_up() -> None:
    """Compile (or load from the cache) every kernel now rather than on the first event."""
    scores = np.zeros(2)
    known = np.zeros(1, dtype=np.int64)
    top_n(scores, 1)
    count_rank(scores, 0, known)
    known_above(np.zeros(2, dtype=np.float32), 0, known)
    base = np.zeros((2, 2))
    ids = np.zeros((2, 2), dtype=np.int32)
    counts = np.zeros((2, 2), dtype=np.float32)
    recent = np.zeros(1, dtype=np.int32)
    large = np.zeros(1, dtype=np.uint8)
    table = log1p_table()
    log1p_count(table, np.float32(0.5))
    session_rank(2, base[0], recent, np.ones(1), ids, counts, table, large, np.zeros(3), 0, known)
    session_observe(
        True,
        2,
        0,
        1,
        np.ones(1),
        table,
        np.zeros(3),
        np.zeros(2, dtype=np.float32),
        0,
        0,
        np.ones(1, dtype=np.int64),
        1,
        np.zeros(1, dtype=np.int64),
        1,
        0.5,
        np.zeros(2, dtype=np.float32),
        np.zeros((2, 2), dtype=np.float32),
        np.zeros((2, 2)),
        base,
        ids,
        counts,
        np.zeros(2, dtype=np.int32),
        np.zeros(2, dtype=np.uint8),
        large,
        np.zeros(2, dtype=np.int32),
        1,
        np.zeros(1, dtype=np.int32),
        np.zeros(2, dtype=np.int64),
    )
    # The run kernel and the history's and baseline's steps, with exactly the
    # argument types the engine passes: through a throwaway processor.
    from engine.processing.processor import ProcessorConfig, StreamProcessor
    from engine.sources.events import Interaction

    for model in ("hybrid", "popular"):
        processor = StreamProcessor(ProcessorConfig(model=model, panel_size=0))
        processor.observe_all([Interaction("u", "a", 5.0, 0.0), Interaction("u", "b", 5.0, 1.0)])


__all__ = [
    "count_rank",
    "history_add",
    "history_room",
    "known_above",
    "learn_session",
    "log1p",
    "log1p_count",
    "popularity_add",
    "session_apply",
    "session_observe",
    "session_rank",
    "session_run",
    "top_n",
    "warm_up",
]
