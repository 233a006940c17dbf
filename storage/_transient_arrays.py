"""Large arrays that live for one checkpoint: allocated without huge-page advice.

numpy advises the kernel to back arrays of 4 MB and more with transparent
huge pages. That suits the model's arrays, read at random for as long as the
process runs; a checkpoint's exports are written once, read once in order,
and freed. Where huge pages are only used on advice with direct compaction
(``/sys/kernel/mm/transparent_hugepage/defrag`` = madvise, as here), the
first such allocations of a process wait for the kernel to compact memory:
at a million users the first full checkpoint's exports took 1.3-1.5 s with
the advice and 0.7 s without it; repeated, either way about 0.35 s.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from numpy._core import multiarray

_set_advice = getattr(multiarray, "_set_madvise_hugepage", None)
_lock = threading.Lock()
_depth = 0  # exports in progress, on any thread
_advice_before = True


@contextmanager
def transient_arrays() -> Iterator[None]:
    """Arrays allocated inside get no huge-page advice; the setting returns after the last exits.

    Reentrant and shared between threads (the event loop's capture and the
    writer's thread may overlap): the advice is off while any is inside.
    """
    global _depth, _advice_before
    if _set_advice is None:
        yield
        return
    with _lock:
        if not _depth:
            _advice_before = _set_advice(False)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if not _depth:
                _set_advice(_advice_before)
