"""How numbers, times and user-typed text read on screen."""

from __future__ import annotations

import re
import time as _time
from datetime import datetime

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$])")


def ago(seconds: float) -> str:
    """A duration in the past as people say it: "just now", "12 s ago", "3 min ago"."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return "just now"
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    if seconds < 86400:
        hours, rest = divmod(seconds, 3600)
        return f"{hours:.0f} h {rest // 60:.0f} min ago"
    days = seconds // 86400
    return f"{days:.0f} day{'s' if days != 1 else ''} ago"


def local_time(timestamp: float, now: float | None = None) -> str:
    """A Unix time as local wall-clock time; the date is added when it is not today."""
    when = datetime.fromtimestamp(timestamp).astimezone()
    today = datetime.fromtimestamp(_time.time() if now is None else now).astimezone().date()
    if when.date() == today:
        return when.strftime("%H:%M:%S")
    return when.strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float) -> str:
    """A window length: "5 min", "1 h", "2 days"."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"


def count(value: int | float | None) -> str:
    """A count with thousands separators, or an em dash when unknown."""
    return "—" if value is None else f"{value:,.0f}"


def escape_markdown(text: str) -> str:
    """Make user-typed text safe to show inside Streamlit markdown."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def shorten(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
