"""A growable matrix: appending a row is amortised O(1), unlike np.concatenate."""

from __future__ import annotations

import numpy as np


class GrowableRows:
    """Rows of ``width`` float32 values in a buffer that doubles when full.

    ``view`` is the live (n, width) part of the buffer; it is only valid until
    the next ``append`` that grows the buffer, so callers re-read it.
    """

    def __init__(self, width: int, capacity: int = 1024, dtype=np.float32):
        shape = (max(capacity, 1), width) if width else (max(capacity, 1),)
        self._buffer = np.zeros(shape, dtype=dtype)
        self.n = 0

    @property
    def view(self) -> np.ndarray:
        return self._buffer[: self.n]

    def append(self, row) -> int:
        """Append one row; returns its index."""
        if self.n == len(self._buffer):
            grown = np.zeros(
                (2 * len(self._buffer), *self._buffer.shape[1:]), dtype=self._buffer.dtype
            )
            grown[: self.n] = self._buffer[: self.n]
            self._buffer = grown
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
