"""A one-line progress display with rate and ETA, on standard error when it is a terminal."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int | None, label: str = "events", enabled: bool | None = None):
        self.total = total
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.started = time.monotonic()
        self._last_draw = 0.0
        self.count = 0

    def advance(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if self.enabled and now - self._last_draw >= 0.2:
            self._last_draw = now
            self._draw(now)

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            sys.stderr.write("\n")
            sys.stderr.flush()

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.count / elapsed
        if self.total:
            remaining = (self.total - self.count) / rate if rate else 0.0
            line = (
                f"{self.count:,}/{self.total:,} {self.label}  {rate:,.0f}/s  "
                f"ETA {_duration(remaining)}"
            )
        else:
            line = f"{self.count:,} {self.label}  {rate:,.0f}/s  {_duration(elapsed)}"
        sys.stderr.write("\r" + line.ljust(60))
        sys.stderr.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
