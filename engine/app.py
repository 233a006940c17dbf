"""The Faust app and its settings; the agent and timer live in engine.agents.

`faust -A engine.app worker --without-web` and `python -m engine worker` both
start it. Settings come from the environment (see engine.settings).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from engine.broker import is_reachable
from engine.consumer import BatchingApp, BatchingConsumer
from engine.kafka import broker_credentials
from engine.runtime import EngineRuntime
from engine.settings import Settings, SettingsError, load_settings
from engine.throttle import throttle_library_logs
from storage import StoreError

log = logging.getLogger(__name__)

try:
    settings = load_settings()
except SettingsError as exc:
    sys.exit(f"error: {exc}")

BROKER_RETRY_S = 2.0  # seconds between attempts to reach a broker that is not up yet


class CheckpointSeekingConsumer(BatchingConsumer):
    """Starts each partition at the offset the store's checkpoint says, not the broker's.

    The broker's committed offsets can be ahead of or behind the last
    checkpoint (and the embedded broker forgets them on restart); resuming
    from the checkpoint's offsets is what makes the model state exactly-once.
    """

    async def seek_to_committed(self):
        committed = dict(await super().seek_to_committed())
        runtime = self.app.runtime
        ours = [tp for tp in self.assignment() if tp.topic == settings.topic]
        if not ours:
            return committed
        try:
            # What the broker holds now: a memory-only broker that restarted
            # holds a new, shorter topic, and the checkpoint's offsets must be
            # re-based onto it (see EngineRuntime.resume_position).
            earliest = await self.earliest_offsets(*ours)
            ends = await self.highwaters(*ours)
        except Exception as exc:
            log.warning(
                "could not ask the broker for its offsets (%r); using the checkpoint's", exc
            )
            earliest, ends = {}, {}
        resume = runtime.resume_offsets()
        for tp in ours:
            if tp in earliest and tp in ends:
                offset = runtime.resume_position(tp.partition, earliest[tp], ends[tp])
            elif tp.partition in resume:
                offset = resume[tp.partition]
            else:
                continue
            await self._seek(tp, offset)
            committed[tp] = offset
        return committed


class EngineApp(BatchingApp):
    """A Faust app whose consumer resumes from the store and which checkpoints on stop."""

    runtime: EngineRuntime
    consumer_class = CheckpointSeekingConsumer

    async def on_first_start(self) -> None:
        await super().on_first_start()
        throttle_library_logs()
        if getattr(self, "runtime", None) is None:  # a benchmark may have made it already
            try:
                self.runtime = EngineRuntime(settings)
            except StoreError as exc:
                # One line and exit code 2, as `python -m engine worker` does.
                log.error("%s", exc)
                raise SystemExit(2) from None
        await self._wait_for_broker()

    async def _wait_for_broker(self) -> None:
        """Wait until the broker accepts connections, saying so, instead of failing to start."""
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(None, is_reachable, settings.broker):
            return
        log.warning(
            "broker at %s is not reachable yet; retrying every %.0f s (start it, or point "
            "RECO_BROKER at a running one)",
            settings.broker,
            BROKER_RETRY_S,
        )
        started = time.monotonic()
        while not self.should_stop:
            await asyncio.sleep(BROKER_RETRY_S)
            if await loop.run_in_executor(None, is_reachable, settings.broker):
                log.info(
                    "broker at %s is reachable after %.0f s",
                    settings.broker,
                    time.monotonic() - started,
                )
                return

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
    # uvloop: Faust yields to the event loop once per message, and uvloop's
    # iterations cost a fraction of asyncio's.
    return ["engine", "--loop", settings.event_loop, "worker", "--without-web", "--loglevel", level]


app = EngineApp(settings.group, **app_options(settings))

events_topic = app.topic(
    settings.topic, value_serializer="raw", key_serializer="raw", partitions=settings.partitions
)

import engine.agents  # noqa: E402, F401  (registers the agent and the checkpoint timer)
