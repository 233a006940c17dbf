"""The online loop's bookkeeping: A/B assignment, impressions, clicks, counts per interval.

Every list the live API serves is an *impression* (user, items, time,
variant). A later positive event of the same user on one of those items,
within ``window_s`` seconds of event time, is a *click* on it. Each event
credits at most one impression (the newest matching one not yet clicked) and
each impression counts at most one click, so CTR = clicks / impressions is
the share of lists a user took something from.

Which clock an impression carries decides whether the window means
anything: the events' timestamps are their own clock (a replay of 1998
ratings runs on 1998 time), so impressions are stamped on that clock too,
with ``StreamClock``: the newest event's timestamp, plus the wall time since
it arrived. On a live stream that is the wall clock (minus the consumer's
lag); on a replay it is the replay's time; and it keeps moving while the
stream is idle.

>>> log = ClickLog(window_s=1800)
>>> log.clock.observe(1_000.0)
>>> _ = log.record("ann", ("a", "b"), "model")
>>> log.observe_positive("ann", "b", 1_060.0)
True
>>> log.observe_positive("ann", "a", 1_070.0)  # the impression already counted its click
False
>>> [(c.variant, c.impressions, c.clicks) for c in log.drain()]
[('model', 1, 1), ('baseline', 0, 0)]
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from storage import OnlineCounts

MODEL = "model"
BASELINE = "baseline"
VARIANTS = (MODEL, BASELINE)
# Timestamps of events often have whole-second resolution (MovieLens): an
# event in the same second as the impression still counts as later.
CLOCK_SLACK_S = 1.0
# Memory bounds: a user's newest impressions, and all impressions held (about
# 250 bytes each with 10 items, so the default holds ~25 MB at most).
MAX_IMPRESSIONS_PER_USER = 8
MAX_IMPRESSIONS = 100_000


def variant_of(user: str, baseline_fraction: float) -> str:
    """``"baseline"`` for a stable ``baseline_fraction`` of user ids, ``"model"`` for the rest.

    A keyed BLAKE2b hash of the id decides, so a user keeps their variant across
    requests, restarts and machines (Python's ``hash()`` is salted per process).
    """
    digest = hashlib.blake2b(
        user.encode("utf-8", "surrogatepass"), digest_size=8, person=b"reco-ab"
    ).digest()
    return BASELINE if int.from_bytes(digest, "big") < baseline_fraction * 2.0**64 else MODEL


class StreamClock:
    """Event time as the stream knows it: the newest event's timestamp, running on.

    ``now()`` is the largest event timestamp seen plus the wall seconds since
    it arrived; before any event it is the wall clock (Unix seconds).
    """

    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self._monotonic = monotonic
        self._wall = wall
        self.latest: float | None = None  # newest event timestamp, Unix seconds
        self._latest_at = 0.0

    def observe(self, timestamp: float) -> None:
        """Take note of one event's timestamp (Unix seconds)."""
        if self.latest is None or timestamp > self.latest:
            self.latest = timestamp
            self._latest_at = self._monotonic()

    def now(self) -> float:
        if self.latest is None:
            return self._wall()
        return self.latest + (self._monotonic() - self._latest_at)


@dataclass(slots=True)
class Impression:
    """One served list. ``time`` is on the stream's clock (Unix seconds)."""

    user: str
    items: tuple[str, ...]
    time: float
    variant: str
    clicked: bool = False
    dropped: bool = False  # pushed out by the per-user bound before it expired


class ClickLog:
    """Impressions of the last ``window_s`` seconds and the clicks they received.

    Memory stays bounded: impressions expire once the stream's clock is past
    their window, a user keeps only their ``max_per_user`` newest, and at most
    ``max_impressions`` are held in all (the oldest go first).
    """

    def __init__(
        self,
        window_s: float = 1800.0,
        *,
        max_per_user: int = MAX_IMPRESSIONS_PER_USER,
        max_impressions: int = MAX_IMPRESSIONS,
        clock: StreamClock | None = None,
    ):
        self.window_s = window_s
        self.max_per_user = max_per_user
        self.max_impressions = max_impressions
        self.clock = clock or StreamClock()
        self._by_user: dict[str, deque[Impression]] = {}
        self._queue: deque[Impression] = deque()  # every impression held, in record order
        self._counts = {variant: [0, 0] for variant in VARIANTS}  # [impressions, clicks]
        self.impressions = 0  # since start
        self.clicks = 0
        # Per variant since start, [impressions, clicks]: what /metrics exports.
        self.by_variant = {variant: [0, 0] for variant in VARIANTS}

    def __len__(self) -> int:
        """Impressions held (some may be clicked or pushed out, not yet expired)."""
        return len(self._queue)

    def record(self, user: str, items: Sequence[str], variant: str) -> Impression:
        """Count one served list; remember it so a later event can click it."""
        impression = Impression(user, tuple(items), self.clock.now(), variant)
        self._counts.setdefault(variant, [0, 0])[0] += 1
        self.by_variant.setdefault(variant, [0, 0])[0] += 1
        self.impressions += 1
        if not impression.items:
            return impression  # nothing on it can be clicked
        held = self._by_user.get(user)
        if held is None:
            held = self._by_user[user] = deque()
        elif len(held) >= self.max_per_user:
            held.popleft().dropped = True
        held.append(impression)
        self._queue.append(impression)
        self._expire(impression.time)
        return impression

    def observe(self, event, positive: bool) -> None:
        """A processor listener: every accepted event moves the clock, positives may click."""
        self.clock.observe(event.timestamp)
        if positive:
            self.observe_positive(event.user, event.item, event.timestamp)

    def observe_positive(self, user: str, item: str, timestamp: float) -> bool:
        """Credit a positive event to the newest impression it clicks; True if one did."""
        held = self._by_user.get(user)
        if not held:
            return False
        for impression in reversed(held):
            if impression.clicked or item not in impression.items:
                continue
            if impression.time - CLOCK_SLACK_S <= timestamp <= impression.time + self.window_s:
                impression.clicked = True
                self._counts.setdefault(impression.variant, [0, 0])[1] += 1
                self.by_variant.setdefault(impression.variant, [0, 0])[1] += 1
                self.clicks += 1
                return True
        return False

    def drain(self) -> list[OnlineCounts]:
        """Counts per variant since the last call (every variant, zeros included)."""
        self._expire(self.clock.now())
        counts = [
            OnlineCounts(variant, shown, clicked)
            for variant, (shown, clicked) in self._counts.items()
        ]
        self._counts = {variant: [0, 0] for variant in VARIANTS}
        return counts

    def _expire(self, now: float) -> None:
        # Held impressions are in record order, which is stream-clock order up to
        # small steps back of the clock; an entry behind a younger one waits a little.
        cutoff = now - self.window_s - CLOCK_SLACK_S
        queue = self._queue
        while queue and (queue[0].time < cutoff or len(queue) > self.max_impressions):
            oldest = queue.popleft()
            if oldest.dropped:
                continue
            held = self._by_user[oldest.user]
            held.popleft()  # a user's oldest held impression is the oldest in the queue
            if not held:
                del self._by_user[oldest.user]
