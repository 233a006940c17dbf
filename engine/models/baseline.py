"""The popularity baseline: positive events per item, ranked in O(1) per event.

Counts only ever grow by one, so instead of comparing the true item's count
with the whole catalogue, the baseline keeps, for every count value c, how
many items have exactly c events (``at``) and how many have more
(``above``). An item moving from c to c + 1 changes ``at[c]``,
``at[c + 1]`` and ``above[c]`` only: the rank of any item is then two array
reads, corrected for the user's known items.

>>> counts = PopularityCounts()
>>> for _ in range(3):
...     counts.register()
>>> for item in (0, 1, 1, 2, 2, 2):
...     counts.add(item)
>>> counts.greater_and_ties(1)  # item 2 has more events; no other item has 2
(1, 0)
"""

from __future__ import annotations

import numpy as np

from engine.kernels import known_above, popularity_add
from engine.models.growable import GrowableRows, grown


class PopularityCounts:
    """Positive events per item (float32, as the store keeps them) with O(1) rank queries."""

    def __init__(self) -> None:
        self._counts = GrowableRows(0)
        # count value -> items with exactly that count (at) and with more (above),
        # with spare levels: compiled runs (engine.kernels) count without growing them.
        self.at = np.zeros(_LEVELS, dtype=np.int64)
        self.above = np.zeros(_LEVELS, dtype=np.int64)
        self.state = np.zeros(1, dtype=np.int64)  # [the highest count]
        self._bind()

    def _bind(self) -> None:
        # Plain attributes, not properties: they are read per event.
        self.n = self._counts.n
        self.counts = self._counts.buffer

    @property
    def view(self) -> np.ndarray:
        """(n_items,) float32 counts; valid until the next ``register``."""
        return self._counts.view

    def register(self) -> None:
        """Add a new item with no events.

        ``counts`` is then the (capacity,) float32 buffer whose first ``n``
        values are the counts, for compiled loops that read known items only.
        """
        self._counts.append(0.0)
        self.at[0] += 1
        self._bind()

    def reserve(self, events: int) -> None:
        """Make room in ``at`` and ``above`` for ``events`` more adds, whatever their items."""
        needed = int(self.state[0]) + events + 2
        if needed > len(self.at):
            size, levels = max(needed, 2 * len(self.at)), len(self.at)
            self.at, self.above = grown(self.at, size, levels), grown(self.above, size, levels)

    def add(self, item: int) -> None:
        """Count one positive event of ``item``."""
        self.reserve(1)
        popularity_add(item, self.counts, self.at, self.above, self.state)

    def greater_and_ties(self, item: int) -> tuple[int, int]:
        """(items with more events than ``item``, other items with as many)."""
        count = int(self._counts.flat[item])
        return int(self.above[count]), int(self.at[count]) - 1

    def rank_counts(self, item: int, known: np.ndarray) -> tuple[int, int]:
        """(greater, ties) for ``item`` among the candidates: ``known`` (int64) items are out.

        The true item stays a candidate even if it is among ``known``.
        """
        greater, ties = self.greater_and_ties(item)
        if len(known):
            known_greater, known_ties = known_above(self._counts.view, item, known)
            greater -= known_greater
            ties -= known_ties
        return greater, ties

    @classmethod
    def from_array(cls, counts: np.ndarray) -> PopularityCounts:
        """Counts restored from a checkpoint: (n_items,) whole numbers."""
        popularity = cls()
        popularity._counts = GrowableRows.from_array(np.asarray(counts, dtype=np.float32))
        values = popularity._counts.view.astype(np.int64)
        at = np.bincount(values, minlength=1) if len(values) else np.zeros(1, dtype=np.int64)
        popularity.state[0] = len(at) - 1
        popularity.reserve(0)
        popularity.at[: len(at)] = at
        popularity.above[: len(at)] = len(values) - np.cumsum(at)
        popularity._bind()
        return popularity


_LEVELS = 1024  # initial count levels
