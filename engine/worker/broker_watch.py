"""Whether the worker's broker accepts connections, and since when it has not."""

from __future__ import annotations

import asyncio
import logging
import time

from engine.sources.broker import is_reachable

log = logging.getLogger(__name__)


class BrokerWatch:
    """Whether the broker accepts connections, and since when it has not (Unix seconds)."""

    def __init__(self, broker_url: str):
        self.broker_url = broker_url
        self.connected: bool | None = None
        self.stalled_since: float | None = None

    async def check(self) -> bool:
        """Probe the broker's bootstrap addresses (off the event loop); log changes."""
        reachable = await asyncio.get_running_loop().run_in_executor(
            None, is_reachable, self.broker_url
        )
        self.record(reachable)
        return reachable

    def record(self, reachable: bool, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if reachable and self.stalled_since is not None:
            log.info(
                "broker at %s is reachable again after %.0f s; resuming",
                self.broker_url,
                now - self.stalled_since,
            )
            self.stalled_since = None
        elif not reachable and self.stalled_since is None:
            self.stalled_since = now
            log.warning(
                "broker at %s is unreachable; keeping the model and retrying "
                "(checkpoints go on, marked as stalled)",
                self.broker_url,
            )
        self.connected = reachable
