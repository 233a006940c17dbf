"""Event encodings on the wire: JSON (the contract) or MessagePack, chosen by RECO_ENCODING.

Producer and engine must agree: the engine decodes with the encoding it is
set to (engine.events.parse_event) and rejects anything else with a reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import msgpack

ENCODINGS = ("json", "msgpack")


def encode_event(event: dict, encoding: str) -> bytes:
    """One event (user, item, rating, timestamp) as a message."""
    if encoding == "msgpack":
        return msgpack.packb(event)
    return json.dumps(event).encode()


def transcode(messages: Iterable[bytes], encoding: str) -> Iterator[bytes]:
    """JSON messages re-encoded as ``encoding``; ones that are not JSON objects pass unchanged.

    The demo's deliberately malformed messages stay malformed in either encoding.
    """
    for message in messages:
        if encoding == "json":
            yield message
            continue
        try:
            event = json.loads(message)
        except ValueError:
            yield message
            continue
        yield encode_event(event, encoding) if isinstance(event, dict) else message
