"""The event contract: one JSON object per message, validated field by field."""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass

MAX_ID_LENGTH = 256
MAX_ABS_RATING = 1e6
# Unix seconds: from 1970 to the year 2100.
MAX_TIMESTAMP = 4_102_444_800.0
PAYLOAD_PREVIEW_CHARS = 500
# Control characters, and lone surrogates (which JSON's \ud800 escapes can
# produce and which no UTF-8 store can hold).
_FORBIDDEN_CATEGORIES = ("Cc", "Cs")


@dataclass(frozen=True, slots=True)
class Interaction:
    """A valid event. Ids are kept as strings; ``timestamp`` is Unix seconds."""

    user: str
    item: str
    rating: float
    timestamp: float


class InvalidEvent(ValueError):
    """A message breaks the event contract; ``str(exc)`` is the reason."""


def parse_event(raw: bytes, max_bytes: int = 64 * 1024) -> Interaction:
    """Decode and validate one message; raise InvalidEvent with the reason."""
    if raw is None:
        raise InvalidEvent("empty message")
    if len(raw) > max_bytes:
        raise InvalidEvent(f"payload too large ({len(raw)} bytes > {max_bytes})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent("not UTF-8") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except RecursionError:
        raise InvalidEvent("JSON nested too deeply") from None
    except InvalidEvent:
        raise
    except ValueError:
        raise InvalidEvent("not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidEvent(f"not a JSON object (got {type(data).__name__})")
    return Interaction(
        user=_id(data, "user"),
        item=_id(data, "item"),
        rating=_number(data, "rating", -MAX_ABS_RATING, MAX_ABS_RATING),
        timestamp=_number(data, "timestamp", 0.0, MAX_TIMESTAMP),
    )


def preview(raw: bytes | None) -> str:
    """A short, printable rendering of a payload for the rejected-events table."""
    if raw is None:
        return ""
    text = raw[: PAYLOAD_PREVIEW_CHARS * 4].decode("utf-8", errors="replace")
    if len(text) > PAYLOAD_PREVIEW_CHARS or len(raw) > PAYLOAD_PREVIEW_CHARS * 4:
        return text[:PAYLOAD_PREVIEW_CHARS] + f"... ({len(raw)} bytes)"
    return text


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidEvent(f"duplicate key {key[:40]!r}")
            seen.add(key)
    return data


def _no_constants(name: str):
    raise InvalidEvent(f"non-finite number {name}")


def _id(data: dict, field: str) -> str:
    if field not in data:
        raise InvalidEvent(f"missing field '{field}'")
    value = data[field]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidEvent(f"'{field}' must be a string or an integer, not {_kind(value)}")
    return check_id(str(value) if isinstance(value, int) else value, field)


def check_id(text: str, field: str = "user") -> str:
    """The id as the engine keeps it (surrounding spaces stripped); InvalidEvent if unusable.

    The live API checks user ids with this too, so it answers for exactly the
    ids an event can carry.
    """
    text = text.strip()
    if not text:
        raise InvalidEvent(f"'{field}' is empty")
    if len(text) > MAX_ID_LENGTH:
        raise InvalidEvent(f"'{field}' is longer than {MAX_ID_LENGTH} characters")
    if any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in text):
        raise InvalidEvent(f"'{field}' contains control characters")
    return text


def _number(data: dict, field: str, low: float, high: float) -> float:
    if field not in data:
        raise InvalidEvent(f"missing field '{field}'")
    value = data[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidEvent(f"'{field}' must be a number, not {_kind(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise InvalidEvent(f"'{field}' is out of range") from None
    if not math.isfinite(number):
        raise InvalidEvent(f"'{field}' is not finite")
    if not low <= number <= high:
        raise InvalidEvent(f"'{field}' is out of range ({low:g} to {high:g})")
    return number


def _kind(value: object) -> str:
    return {
        dict: "an object",
        list: "a list",
        type(None): "null",
        bool: "a boolean",
        float: "a number",
        str: "a string",
    }.get(type(value), type(value).__name__)
