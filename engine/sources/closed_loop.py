"""The closed-loop demo: synthetic users who ask the live API and act on what they see.

Between organic events (the synthetic stream's: items users find elsewhere),
a user asks ``GET /recommend/{user}`` and takes each shown item with
probability ``sigmoid(click_slope * taste + click_bias)``, where ``taste`` is
the stream's standardised affinity of that user for that item (about N(0, 1)
over random pairs). A taken item becomes an event like any other, rated by
the same taste, so the engine learns from what it recommended: the loop is
closed, and the CTR per A/B variant says whether the model's lists suit
users better than popularity does.

While the API does not answer (the engine is starting, or stopped), users
act organically only; the producer keeps going and says so in the log.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
import numpy as np

from engine.sources.synthetic import SyntheticStream

log = logging.getLogger(__name__)

_ITEM = re.compile(r"i(\d+)")
# After a failed request users stop asking for this long (seconds), so a
# stopped engine costs one connection attempt per second, not one per event.
RETRY_AFTER_S = 1.0
# A failure is logged at most this often (seconds).
LOG_EVERY_S = 30.0


@dataclass(frozen=True)
class ClosedLoopConfig:
    request_share: float = 0.3  # recommendation requests per organic event
    n: int = 10  # items asked for
    # Take probability of a shown item: sigmoid(slope * taste + bias). With these
    # an item of average taste is taken 1.8% of the time, one a standard
    # deviation above 7.6%, two above 27%.
    click_slope: float = 1.5
    click_bias: float = -4.0
    timeout_s: float = 2.0  # per request
    seed: int = 11


@dataclass
class LoopStats:
    requests: int = 0
    failures: int = 0
    taken: int = 0  # shown items users interacted with


class ClosedLoop:
    """Organic events from ``stream``, with the users' reactions to the API's lists in between."""

    def __init__(
        self,
        stream: SyntheticStream,
        api_url: str,
        config: ClosedLoopConfig = ClosedLoopConfig(),
        api_token: str = "",
    ):
        self.stream = stream
        self.api_url = api_url.rstrip("/")
        # The live API's bearer token (RECO_API_TOKEN), for a worker serving other machines.
        self._headers = {"Authorization": f"Bearer {api_token}"} if api_token else {}
        self.config = config
        # Its own generator: the organic stream stays what it is for a given seed.
        self.rng = np.random.default_rng(config.seed)
        self.stats = LoopStats()
        self._quiet_until = 0.0
        self._logged_at = -math.inf
        self._down = False

    async def messages(self, limit: int | None = None) -> AsyncIterator[bytes]:
        """``limit`` messages (None: forever): organic events, each followed by any
        events a recommendation caused."""
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        sent = 0
        async with aiohttp.ClientSession(timeout=timeout, headers=self._headers) as session:
            while limit is None or sent < limit:
                batch = [self.stream.next_message()]
                if self.rng.random() < self.config.request_share:
                    batch += await self.ask(session)
                for message in batch[: None if limit is None else limit - sent]:
                    yield message
                    sent += 1

    async def ask(self, session: aiohttp.ClientSession) -> list[bytes]:
        """One user asks for recommendations; the events of the items they take."""
        if time.monotonic() < self._quiet_until:
            return []
        # Every user asks as often as any other: lists go to light and heavy users
        # alike, so a few very active users cannot dominate a variant's CTR.
        user = int(self.rng.integers(len(self.stream.users)))
        url = f"{self.api_url}/recommend/{quote(f'u{user}', safe='')}?n={self.config.n}"
        self.stats.requests += 1
        try:
            async with session.get(url) as response:
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                shown = [entry["item"] for entry in (await response.json())["items"]]
        except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, TypeError) as exc:
            self._failed(exc)
            return []
        if self._down:
            self._down = False
            log.info("the API at %s answers; users act on its recommendations", self.api_url)
        return [self.stream.interaction(user, item, self.rng) for item in self.taken(user, shown)]

    def taken(self, user: int, shown: list[str]) -> list[int]:
        """Indices of the shown items ``user`` interacts with, each with its own chance."""
        c = self.config
        taken = []
        for item_id in shown:
            match = _ITEM.fullmatch(str(item_id))
            if not match or int(match[1]) >= len(self.stream.items):
                continue  # not one of the stream's items
            item = int(match[1])
            p = 1.0 / (
                1.0 + math.exp(-(c.click_slope * self.stream.taste(user, item) + c.click_bias))
            )
            if self.rng.random() < p:
                taken.append(item)
        self.stats.taken += len(taken)
        return taken

    def _failed(self, exc: BaseException) -> None:
        self.stats.failures += 1
        self._down = True
        now = time.monotonic()
        self._quiet_until = now + RETRY_AFTER_S
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.warning(
                "the API at %s does not answer (%s); users act organically until it does",
                self.api_url,
                str(exc) or type(exc).__name__,
            )
