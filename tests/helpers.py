"""Small builders shared by tests: messages and processors."""

from __future__ import annotations

import json

from engine.processing.processor import ProcessorConfig, StreamProcessor


def message(user, item, rating=5, timestamp=1_700_000_000) -> bytes:
    return json.dumps(
        {"user": user, "item": item, "rating": rating, "timestamp": timestamp}
    ).encode()


def feed(processor: StreamProcessor, events, start_offset: int = 0, partition: int = 0) -> None:
    """Feed (user, item[, rating]) tuples as JSON messages at consecutive offsets."""
    for offset, event in enumerate(events, start=start_offset):
        processor.process(message(*event), partition, offset)


def processor(**overrides) -> StreamProcessor:
    return StreamProcessor(ProcessorConfig(**{"panel_size": 5, **overrides}))
