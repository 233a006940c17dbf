"""Prequential (test-then-learn) evaluation: where would the true item have ranked?"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

TOP_N = 10


def rank_of(
    scores: np.ndarray, true_item: int, known: Collection[int], rng: np.random.Generator
) -> tuple[int, int]:
    """Rank the true item among the candidates; return (0-based rank, number of candidates).

    Candidates are every item in ``scores`` except the user's ``known`` items,
    plus the true item itself. Ties are broken uniformly at random (seeded), so
    a model that scores everything alike ranks like chance, not like an oracle.
    No sort: counting the items that beat the true one is O(n_items).
    """
    target = scores[true_item]
    greater = int(np.count_nonzero(scores > target))
    ties = int(np.count_nonzero(scores == target)) - 1
    n_candidates = len(scores)
    if known:
        excluded = np.fromiter((i for i in known if i != true_item), dtype=np.int64)
        if len(excluded):
            excluded_scores = scores[excluded]
            greater -= int(np.count_nonzero(excluded_scores > target))
            ties -= int(np.count_nonzero(excluded_scores == target))
            n_candidates -= len(excluded)
    return break_ties(greater, ties, rng), n_candidates


def break_ties(greater: int, ties: int, rng: np.random.Generator | Draws) -> int:
    """The 0-based rank of an item behind ``greater`` items and level with ``ties`` others."""
    return greater + (int(rng.integers(ties + 1)) if ties > 0 else 0)


_UINT32_MAX = 0xFFFFFFFF


class Draws:
    """A seeded PCG64 generator's draws: ``integers(high)`` and ``random()`` as numpy's.

    ``Generator.integers`` spends about 3 us per call parsing its arguments,
    more than ranking an item; this draws the very same numbers (numpy's
    Lemire method on 32-bit halves of the raw 64-bit outputs, for ``high``
    up to 2**32) in a fraction of that. ``state`` is the generator's state
    as numpy holds it, the half-used output included, so a checkpoint
    continues the stream exactly, with or without this class.
    """

    def __init__(self, seed: int):
        self._generator = np.random.default_rng(seed)
        self._raw = self._generator.bit_generator.random_raw
        self.random = self._generator.random  # whole 64-bit outputs: no half is used
        self._has_half, self._half = 0, 0

    @property
    def state(self) -> dict:
        state = self._generator.bit_generator.state
        state["has_uint32"], state["uinteger"] = self._has_half, self._half
        return state

    @state.setter
    def state(self, state: dict) -> None:
        self._generator.bit_generator.state = state
        self._has_half, self._half = state["has_uint32"], state["uinteger"]

    def integers(self, high: int) -> int:
        """A uniform integer in [0, high), 1 < high <= 2**32: ``Generator.integers(high)``."""
        if high > _UINT32_MAX + 1:
            raise ValueError(f"high must be at most 2**32, got {high}")
        if high == _UINT32_MAX + 1:
            return self._next_uint32()
        scaled = self._next_uint32() * high
        leftover = scaled & _UINT32_MAX
        if leftover < high:
            # Reject the few values that would bias the result (Lemire 2019).
            threshold = (_UINT32_MAX - (high - 1)) % high
            while leftover < threshold:
                scaled = self._next_uint32() * high
                leftover = scaled & _UINT32_MAX
        return scaled >> 32

    def _next_uint32(self) -> int:
        """The low half of a raw output, then its high half (PCG64's next_uint32)."""
        if self._has_half:
            self._has_half = 0
            return self._half
        raw = self._raw()
        self._has_half, self._half = 1, raw >> 32
        return raw & _UINT32_MAX


def percentile_rank(rank: int, n_candidates: int) -> float:
    """rank / (candidates - 1) x 100: 0 is the best position, 100 the worst."""
    return 100.0 * rank / (n_candidates - 1) if n_candidates > 1 else 0.0


_UINT64_MASK = (1 << 64) - 1


def sampled(seed: int, sequence: int, fraction: float) -> bool:
    """Whether the positive event numbered ``sequence`` is in a ``fraction`` sample.

    A hash of (seed, sequence), SplitMix64's finaliser, rather than a draw
    from a generator: the choice then depends on the event alone, not on
    how many draws came before it, so an engine that processes its events
    in runs of any length, or restarts from a checkpoint, samples the same
    events as one that never stopped.
    """
    z = (seed * 0x9E3779B97F4A7C15 + sequence * 0xBF58476D1CE4E5B9) & _UINT64_MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _UINT64_MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _UINT64_MASK
    z ^= z >> 31
    return z < fraction * 18446744073709551616.0
