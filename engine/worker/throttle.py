"""Rate limits for the Kafka client's log lines, which repeat many times a second in an outage."""

from __future__ import annotations

import logging
import time

# Libraries whose loggers repeat themselves while the broker is away.
NOISY_LOGGERS = ("aiokafka",)


class Throttle(logging.Filter):
    """Lets each distinct message through once per ``every_s`` seconds, then says how many it held.

    While the broker is down aiokafka logs every failed reconnect, metadata
    refresh and fetch, dozens of ERROR lines a second. The engine reports the
    outage itself (one WARNING when it starts, one INFO when it ends); this
    keeps the library's detail without drowning that out.
    """

    def __init__(self, every_s: float = 30.0, clock=time.monotonic):
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self._last: dict[tuple[str, object], float] = {}
        self._held: dict[tuple[str, object], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        if len(self._last) > 10_000:  # messages with their values baked in; start over
            self._last.clear()
            self._held.clear()
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = (
                f"{record.getMessage()} [{held} more like this in the last {now - last:.0f} s]"
            )
            record.args = ()
        return True


def throttle_library_logs(every_s: float = 30.0) -> Throttle:
    """Attach one Throttle to every logger of the noisy libraries (they log from module loggers)."""
    throttle = Throttle(every_s)
    names = [
        name
        for name in logging.root.manager.loggerDict
        if any(name == lib or name.startswith(lib + ".") for lib in NOISY_LOGGERS)
    ]
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, Throttle) for f in logger.filters):
            logger.addFilter(throttle)
    return throttle
