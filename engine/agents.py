"""The agent that consumes events and the timer that checkpoints them."""

from __future__ import annotations

import logging

from engine.app import app, events_topic, settings

log = logging.getLogger(__name__)


@app.agent(events_topic)
async def consume_events(stream):
    """Decode, evaluate and learn each message; bad ones are counted and kept, never raised."""
    runtime = app.runtime
    async for event in stream.events():
        message = event.message
        runtime.process(message.value, message.partition, message.offset)


@app.timer(interval=settings.checkpoint_interval)
async def write_checkpoint():
    await app.runtime.checkpoint(lag=consumer_lag())


def consumer_lag() -> int | None:
    """Messages between the processed offsets and the broker's end, where it says."""
    try:
        consumer = app.consumer
        offsets = app.runtime.processor.offsets
        total = 0
        for tp in consumer.assignment():
            if tp.topic != settings.topic:
                continue
            highwater = consumer.highwater(tp)
            if highwater is None:
                return None
            total += max(highwater - offsets.get(tp.partition, 0), 0)
        return total
    except Exception:  # the consumer may be between assignments; lag is best effort
        return None
