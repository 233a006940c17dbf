"""A checkpoint's exports go without huge-page advice, and the model's arrays keep it."""

from __future__ import annotations

import threading

import pytest
from numpy._core import multiarray

from storage._transient_arrays import transient_arrays

set_advice = getattr(multiarray, "_set_madvise_hugepage", None)
pytestmark = pytest.mark.skipif(set_advice is None, reason="numpy without the setting")


def _advice() -> bool:
    current = set_advice(False)
    set_advice(current)
    return current


def test_the_advice_is_off_while_any_thread_exports_and_back_after_the_last():
    before = set_advice(True)
    try:
        inside, entered, release = [], threading.Event(), threading.Event()

        def writer():
            with transient_arrays():
                entered.set()
                release.wait(5)
                inside.append(_advice())

        thread = threading.Thread(target=writer)
        with transient_arrays():
            thread.start()
            entered.wait(5)
            with transient_arrays():
                inside.append(_advice())
            inside.append(_advice())
        inside.append(_advice())  # the writer's thread is still exporting
        release.set()
        thread.join(5)
        assert inside == [False, False, False, False]
        assert _advice() is True
    finally:
        set_advice(before)
