"""Event encodings on the wire: JSON (the contract) or MessagePack, chosen by RECO_ENCODING.

Producer and engine must agree: the engine decodes with the encoding it is
set to (engine.sources.events.parse_event) and rejects anything else with a reason.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable

import msgpack
import orjson

ENCODINGS = ("json", "msgpack")


def encode_event(event: dict, encoding: str) -> bytes:
    """One event (user, item, rating, timestamp) as a message."""
    if encoding == "msgpack":
        return msgpack.packb(event)
    return json.dumps(event).encode()


def transcode(
    messages: Iterable[bytes] | AsyncIterable[bytes], encoding: str
) -> Iterable[bytes] | AsyncIterable[bytes]:
    """JSON messages re-encoded as ``encoding``; ones that are not JSON objects pass unchanged.

    Accepts the closed loop's async stream as well as a plain one. The demo's
    deliberately malformed messages stay malformed in either encoding.
    """
    if encoding == "json":
        return messages
    if isinstance(messages, AsyncIterable):
        return _transcode_async(messages, encoding)
    return (_reencode(message, encoding) for message in messages)


async def _transcode_async(messages: AsyncIterable[bytes], encoding: str) -> AsyncIterator[bytes]:
    async for message in messages:
        yield _reencode(message, encoding)


def _reencode(message: bytes, encoding: str) -> bytes:
    try:
        event = json.loads(message)
    except ValueError:
        return message
    return encode_event(event, encoding) if isinstance(event, dict) else message


def event_key(message: bytes) -> bytes | None:
    """The message's user id as its Kafka key (b"196" for 196 or "196"); None when it has none.

    Kafka keeps the messages of one key in order on one partition, so every
    event of a user reaches the worker that holds that user's state, in order.
    Malformed messages have no key: they go wherever the producer puts them.
    """
    try:
        event = orjson.loads(message)
    except orjson.JSONDecodeError:
        try:
            event = msgpack.unpackb(message)
        except Exception:  # msgpack raises several unrelated types for garbage
            return None
    if not isinstance(event, dict):
        return None
    user = event.get("user")
    if isinstance(user, bool) or not isinstance(user, int | str):
        return None
    return str(user).encode()
