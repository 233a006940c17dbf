"""The Faust app and its settings; the agent and timer live in engine.agents.

`faust -A engine.app worker --without-web` and `python -m engine worker` both
start it. Settings come from the environment (see engine.settings).
"""

from __future__ import annotations

import sys

import faust
from faust.transport.drivers.aiokafka import Consumer as KafkaConsumer

from engine.kafka import broker_credentials
from engine.runtime import EngineRuntime
from engine.settings import Settings, SettingsError, load_settings

try:
    settings = load_settings()
except SettingsError as exc:
    sys.exit(f"error: {exc}")


class CheckpointSeekingConsumer(KafkaConsumer):
    """Starts each partition at the offset the store's checkpoint says, not the broker's.

    The broker's committed offsets can be ahead of or behind the last
    checkpoint (and the embedded broker forgets them on restart); resuming
    from the checkpoint's offsets is what makes the model state exactly-once.
    """

    async def seek_to_committed(self):
        committed = dict(await super().seek_to_committed())
        resume = self.app.runtime.resume_offsets()
        for tp in self.assignment():
            if tp.topic == settings.topic and tp.partition in resume:
                await self._seek(tp, resume[tp.partition])
                committed[tp] = resume[tp.partition]
        return committed


class EngineApp(faust.App):
    """A Faust app whose consumer resumes from the store and which checkpoints on stop."""

    runtime: EngineRuntime

    def _new_consumer(self):
        return CheckpointSeekingConsumer(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.loop,
        )

    async def on_first_start(self) -> None:
        await super().on_first_start()
        if getattr(self, "runtime", None) is None:  # a benchmark may have made it already
            self.runtime = EngineRuntime(settings)

    async def on_stop(self) -> None:
        await super().on_stop()
        runtime = getattr(self, "runtime", None)
        if runtime is not None:
            runtime.final_checkpoint()


def app_options(settings: Settings) -> dict:
    """Faust settings shared by the engine and the benchmark's no-op consumer."""
    return {
        "broker": settings.broker,
        "store": "memory://",
        "datadir": str(settings.datadir),
        "topic_partitions": settings.partitions,
        # The embedded broker holds a group join for half the session timeout:
        # with these a worker joins in a few seconds instead of 30.
        "broker_session_timeout": 6,
        "broker_rebalance_timeout": 6,
        "broker_heartbeat_interval": 1,
        "consumer_auto_offset_reset": "earliest",
        "web_enabled": False,
        "web_host": "127.0.0.1",
        "autodiscover": False,
        "broker_credentials": broker_credentials(settings),
    }


def worker_argv(settings: Settings) -> list[str]:
    """Arguments for ``app.main()`` to run a worker without Faust's web server."""
    level = {"warning": "warn"}.get(settings.log_level.lower(), settings.log_level.lower())
    return ["engine", "worker", "--without-web", "--loglevel", level]


app = EngineApp(settings.group, **app_options(settings))

events_topic = app.topic(
    settings.topic, value_serializer="raw", key_serializer="raw", partitions=settings.partitions
)

import engine.agents  # noqa: E402, F401  (registers the agent and the checkpoint timer)
