"""Admission control for the API: its handlers get at most a share of the event loop.

The worker's event loop runs both the agent (one event per loop turn; at
most every 32nd turn also processes the run held before it, see
engine.worker.agents) and the web server (every request that is ready, each turn).
Under a flood of requests the agent would get almost no turn at all; here
every handler first asks ``LoopShare.admit()``, which lets it run while the
API has used less than ``share`` of the wall time lately, makes it wait in
line otherwise, and turns it away (False) when the line is already longer
than ``max_wait_s`` of work: the caller answers 503, which costs next to
nothing.

Time is a token bucket in seconds: it fills at ``share`` seconds per wall
second up to ``burst_s``; each request spends the CPU time it held the loop
for (the caller measures it).

>>> now = [0.0]
>>> share = LoopShare(0.25, burst_s=0.010, clock=lambda: now[0])
>>> share.spend(0.012)  # a burst larger than the bucket
>>> share.wait_s()  # 2 ms short: earned back in 8 ms at a quarter of wall time
0.008
>>> now[0] += 0.008
>>> share.wait_s()
0.0
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class LoopShare:
    """Keeps the time requests hold the event loop to ``share`` (0..1] of wall time."""

    def __init__(
        self,
        share: float,
        *,
        burst_s: float = 0.020,
        max_wait_s: float = 1.0,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.share = share
        self.burst_s = burst_s
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._tokens = burst_s
        self._at = clock()
        self._mean_cost_s = 0.0005  # a running mean of what one request spends
        self._waiters: deque[asyncio.Future] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self.waited = 0  # requests that had to wait their turn
        self.refused = 0  # requests turned away because the line was too long

    def wait_s(self) -> float:
        """Seconds until the bucket holds time again (0 when it does now)."""
        self._refill()
        return max(0.0, -self._tokens) / self.share

    async def admit(self) -> bool:
        """Wait for this request's turn; False (at once) when the wait would be too long."""
        if not self._waiters and self.wait_s() == 0.0:
            return True
        ahead = self.wait_s() + len(self._waiters) * self._mean_cost_s / self.share
        if ahead > self.max_wait_s:
            self.refused += 1
            return False
        self.waited += 1
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        self._wake()
        try:
            await turn
        except asyncio.CancelledError:
            # The client went away while waiting: give the turn to the next one.
            if turn in self._waiters:
                self._waiters.remove(turn)
            self._wake()
            raise
        return True

    def spend(self, seconds: float) -> None:
        """Charge one request's time on the loop, and let the next waiter in if it may."""
        self._refill()
        self._tokens -= seconds
        self._mean_cost_s += 0.05 * (seconds - self._mean_cost_s)
        self._wake()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst_s, self._tokens + (now - self._at) * self.share)
        self._at = now

    def _wake(self) -> None:
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()
        if not self._waiters or self._timer is not None:
            return
        wait = self.wait_s()
        if wait == 0.0:
            self._waiters.popleft().set_result(None)
        else:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(wait, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._wake()
