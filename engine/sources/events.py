"""The event contract: one JSON object per message, validated field by field.

MessagePack (the same map) is the binary alternative, for producers and
engines that agree on it (RECO_ENCODING).
"""

from __future__ import annotations

import json
import math
import unicodedata
from typing import NamedTuple

import msgpack
import orjson

MAX_ID_LENGTH = 256
MAX_ABS_RATING = 1e6
# Unix seconds: from 1970 to the year 2100.
MAX_TIMESTAMP = 4_102_444_800.0
PAYLOAD_PREVIEW_CHARS = 500
_INT64_LIMIT = 2.0**63
# Control characters, and lone surrogates (which JSON's \ud800 escapes can
# produce and which no UTF-8 store can hold).
_FORBIDDEN_CATEGORIES = ("Cc", "Cs")


class Interaction(NamedTuple):
    """A valid event. Ids are kept as strings; ``timestamp`` is Unix seconds.

    A named tuple, not a frozen dataclass: as immutable, and built in a
    third of the time (one is built per message).
    """

    user: str
    item: str
    rating: float
    timestamp: float


class InvalidEvent(ValueError):
    """A message breaks the event contract; ``str(exc)`` is the reason."""


class UndecodableMessage(bytes):
    """A message of a record batch the consumer could not decode (engine.worker.batches).

    Empty bytes, so it travels wherever a message does; parse_event rejects
    it with its ``reason``.
    """

    reason: str

    def __new__(cls, reason: str) -> UndecodableMessage:
        message = super().__new__(cls)
        message.reason = reason
        return message


def parse_event(raw: bytes, max_bytes: int = 64 * 1024, encoding: str = "json") -> Interaction:
    """Decode and validate one message; raise InvalidEvent with the reason.

    ``encoding`` is "json" (the contract) or "msgpack" (the same object as a
    MessagePack map; see engine.sources.encoding).
    """
    if not raw:
        if raw is None:
            raise InvalidEvent("empty message")
        if type(raw) is UndecodableMessage:
            raise InvalidEvent(raw.reason)
    if len(raw) > max_bytes:
        raise InvalidEvent(f"payload too large ({len(raw)} bytes > {max_bytes})")
    if encoding == "msgpack":
        data = _msgpack_object(raw)
    else:
        data = _orjson_dict(raw)
        if data is not None:
            event = _plain_event(raw, data)
            if event is not None:
                return event
            data = _checked_orjson_dict(raw, data)
        if data is None:
            data = _json_object(raw)
    if not isinstance(data, dict):
        kind = "MessagePack map" if encoding == "msgpack" else "JSON object"
        raise InvalidEvent(f"not a {kind} (got {type(data).__name__})")
    return Interaction(
        user=_id(data, "user"),
        item=_id(data, "item"),
        rating=_number(data, "rating", -MAX_ABS_RATING, MAX_ABS_RATING),
        timestamp=_number(data, "timestamp", 0.0, MAX_TIMESTAMP),
    )


def _orjson_dict(raw: bytes) -> dict | None:
    """The message read by orjson (about 5x faster) if it is an object with no escapes, else None.

    Both fast paths below start from it; None leaves the message to the
    strict parser, which says why it is invalid, if it is.
    """
    if type(raw) is not bytes or b"\\" in raw:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return data if type(data) is dict else None


def _plain_event(raw: bytes, data: dict) -> Interaction | None:
    """The event of a message in the common shape, or None to let the field checks decide.

    The common shape is what nearly every producer sends: the four fields
    and no other, ids that are integers or printable ASCII strings with
    nothing to strip, numbers within range, no escapes. parse_event's
    answer for it is the values as they are, which this checks in a third
    of the time the general checks take. Duplicate keys would show as more
    quotes than the four keys and the string values account for.
    """
    if len(data) != 4:
        return None
    try:
        user, item = data["user"], data["item"]
        rating, timestamp = data["rating"], data["timestamp"]
    except KeyError:
        return None
    # Integer ids become strings (of at most 20 characters: orjson reads 64 bits).
    strings = 2
    if type(user) is int:
        user = str(user)
        strings -= 1
    elif type(user) is not str:
        return None
    if type(item) is int:
        item = str(item)
        strings -= 1
    elif type(item) is not str:
        return None
    # check_id keeps an id as it is if it has 1..MAX_ID_LENGTH printable
    # ASCII characters and no space at either end; both ids at once here.
    ids = user + item
    if not (
        0 < len(user) <= MAX_ID_LENGTH
        and 0 < len(item) <= MAX_ID_LENGTH
        and ids.isascii()
        and ids.isprintable()
        and user[0] != " "
        and user[-1] != " "
        and item[0] != " "
        and item[-1] != " "
    ):
        return None
    if type(rating) is int:
        rating = float(rating)
    elif type(rating) is not float:
        return None
    if type(timestamp) is int:
        timestamp = float(timestamp)
    elif type(timestamp) is not float:
        return None
    # Comparisons are False for NaN; these ranges also keep out the floats
    # orjson makes of integers beyond 64 bits.
    if not (-MAX_ABS_RATING <= rating <= MAX_ABS_RATING and 0.0 <= timestamp <= MAX_TIMESTAMP):
        return None
    if raw.count(b'"') != 2 * (4 + strings):
        return None
    return Interaction(user, item, rating, timestamp)


def _checked_orjson_dict(raw: bytes, data: dict) -> dict | None:
    """orjson's object of the message if the strict parser would read the same, else None.

    orjson keeps the last of duplicate keys silently and reads integers
    beyond 64 bits as floats, so its answer is taken only for a flat object
    of plain values whose quotes all delimit its own keys and strings (no
    escapes): then a duplicate key would show as extra quotes. Anything else
    goes to the strict parser, which says why.
    """
    strings = 0
    for value in data.values():
        kind = type(value)
        if kind is str:
            strings += 1
        elif kind is float:
            if not -_INT64_LIMIT < value < _INT64_LIMIT:
                return None  # maybe an integer orjson could not hold
        elif kind is dict or kind is list:
            return None
    if raw.count(b'"') != 2 * (len(data) + strings):
        return None
    return data


def _json_object(raw: bytes):
    """The strict parser: the standard library's, refusing duplicate keys and NaN."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent("not UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except RecursionError:
        raise InvalidEvent("JSON nested too deeply") from None
    except InvalidEvent:
        raise
    except ValueError:
        raise InvalidEvent("not valid JSON") from None


def _msgpack_object(raw: bytes):
    try:
        return msgpack.unpackb(raw, object_pairs_hook=_no_duplicate_keys, strict_map_key=True)
    except InvalidEvent:
        raise
    except msgpack.StackError:
        raise InvalidEvent("MessagePack nested too deeply") from None
    except (ValueError, TypeError, msgpack.UnpackException):
        raise InvalidEvent("not valid MessagePack") from None


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
                raise InvalidEvent(f"duplicate key ({key[:40]!r})")
            seen.add(key)
    return data


def _no_constants(name: str):
    raise InvalidEvent(f"non-finite number ({name})")


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
    if text.isascii() and text.isprintable():
        return text  # no control character, and no surrogate, can be in it
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
