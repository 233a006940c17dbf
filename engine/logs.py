"""Log lines as text for people, or as JSON lines for log collectors (RECO_LOG_FORMAT=json)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message[, exception]."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: int, log_format: str) -> None:
    """Log to standard error at ``level``, as ``log_format`` ("text" or "json") says."""
    logging.basicConfig(level=level, format=TEXT_FORMAT)
    if log_format == "json":
        use_json()


def use_json() -> None:
    """Make every handler of the root logger write JSON lines (after Faust set up its own)."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter())
