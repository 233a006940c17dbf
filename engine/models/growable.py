"""A growable matrix: appending a row is amortised O(1), unlike np.concatenate."""

from __future__ import annotations

import numpy as np


class GrowableRows:
    """Rows of ``width`` values (float32 by default) in a buffer that doubles when full.

    ``view`` is the live (n, width) part of the buffer, or (n,) when ``width``
    is 0; ``flat`` is the same memory as a flat memoryview, row-major, whose
    items read and write as Python numbers without making numpy scalars
    (cheaper for one value at a time). Both are only valid until the next
    ``append`` that grows the buffer, so callers re-read them.
    """

    def __init__(self, width: int, capacity: int = 1024, dtype=np.float32):
        self.width = width
        self.dtype = np.dtype(dtype)
        self.n = 0
        self._allocate(max(capacity, 1))

    def _allocate(self, capacity: int) -> None:
        shape = (capacity, self.width) if self.width else (capacity,)
        self._buffer = np.zeros(shape, dtype=self.dtype)
        self._flat: memoryview | None = None

    @property
    def view(self) -> np.ndarray:
        return self._buffer[: self.n]

    @property
    def buffer(self) -> np.ndarray:
        """The whole buffer, spare rows included (zeros): for compiled loops that take ``n``."""
        return self._buffer

    @property
    def flat(self) -> memoryview:
        """The whole buffer as a flat memoryview: row ``r``, column ``c`` is ``r * width + c``."""
        if self._flat is None:
            self._flat = memoryview(self._buffer.reshape(-1))
        return self._flat

    def append(self, row) -> int:
        """Append one row; returns its index."""
        if self.n == len(self._buffer):
            old = self._buffer
            self._allocate(2 * len(old))
            self._buffer[: self.n] = old[: self.n]
        self._buffer[self.n] = row
        self.n += 1
        return self.n - 1

    @classmethod
    def from_array(cls, array: np.ndarray, dtype=np.float32) -> GrowableRows:
        width = array.shape[1] if array.ndim == 2 else 0
        rows = cls(width, capacity=max(1024, 2 * len(array)), dtype=dtype)
        rows._buffer[: len(array)] = array
        rows.n = len(array)
        return rows


def grown(array: np.ndarray, size: int, keep: int) -> np.ndarray:
    """A zeroed 1-d array of ``size`` entries starting with ``array``'s first ``keep``."""
    larger = np.zeros(size, dtype=array.dtype)
    larger[:keep] = array[:keep]
    return larger
