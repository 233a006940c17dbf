"""A synthetic stream for the demo: latent tastes, Zipf popularity, arrivals and a taste shift."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

_ADJECTIVES = (
    "Silent",
    "Golden",
    "Last",
    "Hidden",
    "Electric",
    "Crimson",
    "Lonely",
    "Wild",
    "Frozen",
    "Midnight",
    "Broken",
    "Secret",
    "Distant",
    "Burning",
    "Paper",
    "Iron",
)
_NOUNS = (
    "Harbor",
    "Garden",
    "Signal",
    "River",
    "Empire",
    "Mirror",
    "Comet",
    "Orchard",
    "Station",
    "Lantern",
    "Desert",
    "Circus",
    "Voyage",
    "Kingdom",
    "Melody",
    "Shadow",
)


@dataclass(frozen=True)
class SyntheticConfig:
    initial_users: int = 300
    initial_items: int = 400
    new_user_every: int = 40  # events between arrivals of a new user
    new_item_every: int = 120
    n_factors: int = 8
    zipf: float = 1.0  # item popularity ~ 1 / rank^zipf
    taste_strength: float = 2.5  # how much taste, versus popularity, picks the item
    shift_at: int = 20_000  # event index of the taste shift (0: never)
    shift_share: float = 0.7  # share of each user's taste redrawn at the shift
    malformed: float = 0.0  # fraction of malformed messages
    seed: int = 7


class SyntheticStream:
    """Generates messages (bytes) one at a time; the same seed gives the same stream."""

    def __init__(
        self, config: SyntheticConfig = SyntheticConfig(), clock: Callable[[], float] = time.time
    ):
        self.config = config
        self.clock = clock
        self.rng = np.random.default_rng(config.seed)
        k = config.n_factors
        self.users = self.rng.normal(size=(config.initial_users, k)) / np.sqrt(k)
        self.items = self.rng.normal(size=(config.initial_items, k)) / np.sqrt(k)
        self.sent = 0
        self.shifted = False

    def item_name(self, index: int) -> str:
        adjective = _ADJECTIVES[index % len(_ADJECTIVES)]
        noun = _NOUNS[(index // len(_ADJECTIVES)) % len(_NOUNS)]
        return f"The {adjective} {noun} #{index}"

    def item_names(self, up_to: int) -> dict[str, str]:
        return {f"i{i}": self.item_name(i) for i in range(up_to)}

    def __iter__(self) -> Iterator[bytes]:
        while True:
            yield self.next_message()

    def next_message(self) -> bytes:
        c = self.config
        self.sent += 1
        if c.malformed and self.rng.random() < c.malformed:
            return self._malformed()
        self._arrivals()
        n_items = len(self.items)
        user = self._pick_user()
        # Popularity by index (older items are more popular) times taste.
        affinity = self.items @ self.users[user]
        popularity = -c.zipf * np.log1p(np.arange(n_items))
        logits = popularity + c.taste_strength * affinity * np.sqrt(c.n_factors)
        probs = np.exp(logits - logits.max())
        item = int(self.rng.choice(n_items, p=probs / probs.sum()))
        return self.interaction(user, item)

    def _pick_user(self) -> int:
        # Recent arrivals and a core of heavy users are the most active.
        n = len(self.users)
        return (
            int(min(n - 1, self.rng.zipf(1.3) - 1))
            if self.rng.random() < 0.3
            else int(self.rng.integers(n))
        )

    def taste(self, user: int, item: int) -> float:
        """How much ``user`` likes ``item``, standardised: about N(0, 1) over random pairs."""
        return float(self.items[item] @ self.users[user]) * np.sqrt(self.config.n_factors)

    def interaction(self, user: int, item: int, rng: np.random.Generator | None = None) -> bytes:
        """The message of ``user`` interacting with ``item`` now, rated by taste plus noise."""
        rng = self.rng if rng is None else rng
        z = self.taste(user, item)
        rating = int(np.clip(np.rint(3.3 + 1.3 * z + rng.normal(0, 0.6)), 1, 5))
        event = {
            "user": f"u{user}",
            "item": f"i{item}",
            "rating": rating,
            "timestamp": round(self.clock(), 3),
        }
        return json.dumps(event).encode()

    def _arrivals(self) -> None:
        c = self.config
        k = c.n_factors
        if c.new_user_every and self.sent % c.new_user_every == 0:
            self.users = np.vstack([self.users, self.rng.normal(size=(1, k)) / np.sqrt(k)])
        if c.new_item_every and self.sent % c.new_item_every == 0:
            self.items = np.vstack([self.items, self.rng.normal(size=(1, k)) / np.sqrt(k)])
        if c.shift_at and not self.shifted and self.sent >= c.shift_at:
            fresh = self.rng.normal(size=self.users.shape) / np.sqrt(k)
            self.users = (1 - c.shift_share) * self.users + c.shift_share * fresh
            self.shifted = True

    def _malformed(self) -> bytes:
        kind = int(self.rng.integers(6))
        if kind == 0:
            return b"{not json"
        if kind == 1:
            return json.dumps({"user": "u1", "item": "i1"}).encode()  # no rating, no time
        if kind == 2:
            return json.dumps(
                {"user": "", "item": "i1", "rating": 5, "timestamp": self.clock()}
            ).encode()
        if kind == 3:
            return json.dumps(
                {"user": "u1", "item": "i1", "rating": "five", "timestamp": self.clock()}
            ).encode()
        if kind == 4:
            return json.dumps([1, 2, 3]).encode()
        return b"\xff\xfe\x00garbage"
