"""The agent that consumes events, the timer that checkpoints them, the dead-letter sender."""

from __future__ import annotations

from engine.worker.app import EngineApp

# Messages processed in one run at most: a run holds the event loop, and the
# API with it. 32 kept bench serve's p99 lowest (docs/benchmarks.md, RUN_MAX).
RUN_MAX = 32
# Seconds between sends of the item increments to the other workers (checkpoints
# send theirs too): the other workers' lag. `evaluate --partitions 4 --workers 2`
# put the cost of 5 s (a checkpoint interval) at -4.2% recall@10, of 1 s at
# under -2% (docs/evaluation.md, "Several workers").
SHARE_EVERY_S = 1.0


def register_agents(app: EngineApp) -> None:
    """Register the engine's agent, its checkpoint timer and its dead-letter task on ``app``."""

    @app.agent(app.events_topic, name="consume_events")
    async def consume_events(stream):
        """Decode, evaluate and learn each message; bad ones are counted and kept, never raised.

        Messages are processed in runs (EngineRuntime.hold): a run ends when
        nothing more is waiting in the stream's buffer, so a message never
        waits for one that has not arrived, or when it reaches RUN_MAX.
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
        """Rejected messages to RECO_DEAD_LETTER_TOPIC, where one is set (worker.dead_letters)."""
        if app.runtime.dead_letters is not None:
            await app.runtime.dead_letters.run()

    @app.timer(interval=app.settings.checkpoint_interval, name="write_checkpoint")
    async def write_checkpoint():
        await app.runtime.checkpoint(lag=app.owned_lag())

    @app.timer(interval=SHARE_EVERY_S, name="share_increments")
    async def share_increments():
        """Send the item increments learned since the last send, between checkpoints too."""
        await app.runtime.share_increments()

    @app.on_partitions_revoked.connect
    async def hand_over(sender, revoked, **_):
        """Before a rebalance hands partitions on: a checkpoint, so the next owner starts from now."""
        if app.runtime is not None and app.runtime.sharing is not None:
            await app.runtime.checkpoint(lag=app.owned_lag())
