"""Event messages as producers send them: one by one, the synthetic stream's, a known stream."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass

from engine.sources.synthetic import SyntheticConfig, SyntheticStream


def message(user, item, rating=5, timestamp=1_700_000_000) -> bytes:
    """One event as the JSON bytes a producer sends."""
    return json.dumps(
        {"user": user, "item": item, "rating": rating, "timestamp": timestamp}
    ).encode()


def synthetic_messages(n: int, seed: int = 3) -> list[bytes]:
    """The synthetic demo stream's first ``n`` messages, without its taste shift, 1 s apart."""
    clock = itertools.count(1_700_000_000).__next__
    stream = SyntheticStream(SyntheticConfig(seed=seed, shift_at=0), clock=lambda: float(clock()))
    return list(itertools.islice(stream, n))


@dataclass
class KnownStream:
    """A seeded stream of valid events (and a share of malformed ones) whose counts are known.

    Positive means ``rating >= 4``, the engine's default threshold.
    """

    users: int = 400
    items: int = 600
    bad_share: float = 0.02
    seed: int = 1
    uniform: bool = False  # every user and item alike, instead of a few popular ones

    def __post_init__(self):
        self.rng = random.Random(self.seed)
        self.sent = 0

    def next(self) -> tuple[bytes, str]:
        """One message and its kind: 'positive', 'negative' or 'bad'."""
        self.sent += 1
        rng = self.rng
        if rng.random() < self.bad_share:
            return b'{"user": "u1", "item": ', "bad"
        if self.uniform:
            user, item = f"u{rng.randrange(self.users)}", f"i{rng.randrange(self.items)}"
        else:
            user = f"u{min(int(rng.paretovariate(1.2)), self.users)}"
            item = f"i{min(int(rng.paretovariate(1.0)), self.items)}"
        rating = rng.choice((1, 2, 3, 4, 5, 5))
        payload = message(user, item, rating, 1_700_000_000 + self.sent)
        return payload, "positive" if rating >= 4 else "negative"
