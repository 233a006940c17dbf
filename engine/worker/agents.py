"""The agent that consumes events and the timer that checkpoints them."""

from __future__ import annotations

import logging

from engine.worker.app import app, events_topic, settings

log = logging.getLogger(__name__)

# Messages processed in one run at most: a run holds the event loop, and the
# API with it, for about 17 us a message (40 before a run was learned in one
# compiled call, when these figures were taken). `bench serve` (100 clients) gave
# p50 / p99 of 2.6 / 22 ms at 8, 1.8 / 17 at 16, 2.2 / 15 at 32 and, in two
# runs, 3.2 / 21 and 8.2 / 54 at 64; events/s without requests 7,100, 8,700,
# 8,900, and 8,100 and 6,400 (one run each otherwise, quiet 2-core VM).
RUN_MAX = 32


@app.agent(events_topic)
async def consume_events(stream):
    """Decode, evaluate and learn each message; bad ones are counted and kept, never raised.

    Messages are processed in runs (EngineRuntime.hold): a run ends when
    nothing more is waiting in the stream's buffer, so a message never waits
    for one that has not arrived, or when it reaches RUN_MAX.
    """
    runtime = app.runtime
    waiting = stream.channel.queue.qsize
    async for event in stream.events():
        message = event.message
        if (
            runtime.hold(message.value, message.partition, message.offset) >= RUN_MAX
            or not waiting()
        ):
            runtime.process_held()


@app.task
async def send_dead_letters():
    """Rejected messages to RECO_DEAD_LETTER_TOPIC, where one is set (engine.worker.dead_letters)."""
    if app.runtime.dead_letters is not None:
        await app.runtime.dead_letters.run()


@app.timer(interval=settings.checkpoint_interval)
async def write_checkpoint():
    await app.runtime.checkpoint(lag=consumer_lag())


def consumer_lag() -> int | None:
    """Messages between the processed offsets and the broker's end, where it says."""
    lag = app.owned_lag()
    return None if lag is None else sum(lag.values())
