"""The Faust app of the worker, made from Settings; agents and views register on it elsewhere.

engine.worker.build_app() makes an EngineApp and has engine.worker.agents
and engine.worker.api register on it; nothing runs at import.
`python -m engine worker` runs it with the settings it has checked;
`faust -A engine.worker.app worker` asks this module for ``app``, which is
built from the environment then (module ``__getattr__``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import time

import faust
import mode.loop

from engine import logs
from engine.settings import Settings, SettingsError, ensure_datadir, load_settings
from engine.sources.broker import is_reachable
from engine.sources.kafka import broker_credentials, client_options, declare_topic, end_offsets
from engine.worker.consumer import BatchingApp, BatchingConsumer, assigned, lag_by_partition
from engine.worker.routing import advertised_host
from engine.worker.runtime import EngineRuntime, check_model
from engine.worker.throttle import throttle_library_logs
from storage import StoreError

log = logging.getLogger(__name__)

BROKER_RETRY_S = 2.0  # seconds between attempts to reach a broker that is not up yet
DEAD_LETTER_FLUSH_S = 5.0  # seconds a stopping worker waits for the dead-letter topic, at most
HANDOVER_S = 10.0  # seconds a stopping worker waits for Kafka to take its handover, at most


class CheckpointSeekingConsumer(BatchingConsumer):
    """Starts each partition at the offset the store's checkpoint says, not the broker's.

    The broker's committed offsets can be ahead of or behind the last
    checkpoint (and the embedded broker forgets them on restart); resuming
    from the checkpoint's offsets is what makes the model state exactly-once.
    """

    async def seek_to_committed(self):
        committed = dict(await super().seek_to_committed())
        runtime = self.app.runtime
        ours = [tp for tp in self.assignment() if tp.topic == self.app.settings.topic]
        if not ours:
            return committed
        try:
            # What the broker holds now: a memory-only broker that restarted
            # holds a new, shorter topic, and the checkpoint's offsets must be
            # re-based onto it (see EngineRuntime.resume_position).
            earliest = await self.earliest_offsets(*ours)
            ends = await end_offsets(ours, client_options(self.app.settings))
        except Exception as exc:
            log.warning(
                "could not ask the broker for its offsets (%r); using the checkpoint's", exc
            )
            earliest, ends = {}, {}
        # Partitions new to this worker continue from their handover (engine.worker.sharing).
        await runtime.take_partitions([tp.partition for tp in ours])
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

    consumer_class = CheckpointSeekingConsumer

    def __init__(self, settings: Settings):
        super().__init__(settings.group, **app_options(settings))
        self.settings = settings
        self.runtime: EngineRuntime | None = None  # made at first start (or by a benchmark)
        # The live API's counters, set by engine.worker.api.register_api.
        self.handler_stats = None
        self.worker_metrics = None
        self.events_topic = self.topic(
            settings.topic,
            value_serializer="raw",
            key_serializer="raw",
            partitions=settings.partitions,
            replicas=settings.replication,
        )

    async def on_first_start(self) -> None:
        await super().on_first_start()
        if self.settings.log_format == "json":
            logs.use_json()  # Faust has set up its handlers by now
        throttle_library_logs()
        if self.runtime is None:  # a benchmark may have made it already
            try:
                self.runtime = EngineRuntime(self.settings)
            except StoreError as exc:
                # One line and exit code 2, as `python -m engine worker` does.
                log.error("%s", exc)
                raise SystemExit(2) from None
        await self._wait_for_broker()
        await self._declare_events_topic()
        if not self.should_stop:
            await self.runtime.share()

    async def _declare_events_topic(self) -> None:
        """Create the events topic with RECO_PARTITIONS and RECO_REPLICATION unless it exists.

        Faust creates only its own internal topics: a worker started before any
        producer subscribed to a topic the broker then made with its own
        defaults (4 partitions of 1 copy on the embedded broker).
        """
        if self.should_stop:
            return
        try:
            await declare_topic(
                self.settings.broker,
                self.settings.topic,
                self.settings.partitions,
                client_options(self.settings),
                replication=self.settings.replication,
            )
        except Exception as exc:  # a cluster may leave creating topics to its operators
            log.warning(
                "could not create topic %s (%r); consuming it as it is", self.settings.topic, exc
            )

    def _create_directories(self) -> None:
        """Faust's folders, parents included: RECO_DATADIR may be a folder not made yet."""
        try:
            ensure_datadir(self.settings)
        except SettingsError as exc:
            log.error("%s", exc)  # one line and exit code 2, as `python -m engine worker` does
            raise SystemExit(2) from None
        super()._create_directories()

    async def _wait_for_broker(self) -> None:
        """Wait until the broker accepts connections, saying so, instead of failing to start."""
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(None, is_reachable, self.settings.broker):
            return
        log.warning(
            "broker at %s is not reachable yet; retrying every %.0f s (start it, or point "
            "RECO_BROKER at a running one)",
            self.settings.broker,
            BROKER_RETRY_S,
        )
        started = time.monotonic()
        while not self.should_stop:
            await asyncio.sleep(BROKER_RETRY_S)
            if await loop.run_in_executor(None, is_reachable, self.settings.broker):
                log.info(
                    "broker at %s is reachable after %.0f s",
                    self.settings.broker,
                    time.monotonic() - started,
                )
                return

    def owned_partitions(self) -> list[int]:
        """The events topic's partitions assigned to this worker now, in order."""
        try:
            consumer = self.consumer
        except Exception:  # not made yet
            return []
        return [tp.partition for tp in assigned(consumer, self.settings.topic) or []]

    def owned_lag(self) -> dict[int, int] | None:
        """Per partition this worker owns, messages still to process; None while unknown."""
        runtime = self.runtime
        if runtime is None:
            return None
        return lag_by_partition(self.consumer, runtime.processor.offsets, self.settings.topic)

    async def on_started(self) -> None:
        await super().on_started()
        # Faust, aiokafka and the restored model live as long as the worker: out
        # of the cyclic GC's reach, full collections stop scanning them. They
        # held the loop, and so every API request, for 60-250 ms at a time here.
        gc.freeze()

    async def on_stop(self) -> None:
        await super().on_stop()
        runtime = self.runtime
        if runtime is None:
            return
        if runtime.dead_letters is not None:
            await runtime.dead_letters.flush(timeout=DEAD_LETTER_FLUSH_S)
        await runtime.final_checkpoint(timeout=HANDOVER_S)
        if not is_reachable(self.settings.broker):
            # With its broker gone, aiokafka's consumer takes a minute to close
            # and logs tracebacks meanwhile; everything is saved, so leave now.
            log.info("broker unreachable: exiting without closing the Kafka client")
            logging.shutdown()
            os._exit(0)


def app_options(settings: Settings) -> dict:
    """Faust settings shared by the engine and the benchmark's no-op consumer."""
    return {
        "broker": settings.broker,
        "store": "memory://",
        "datadir": str(settings.datadir),
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication,
        # The embedded broker holds a group join for half the session timeout:
        # with these a worker joins in a few seconds instead of 30.
        "broker_session_timeout": 6,
        "broker_rebalance_timeout": 6,
        "broker_heartbeat_interval": 1,
        "consumer_auto_offset_reset": "earliest",
        # At most this many messages per poll: with a backlog, an unbounded poll
        # turns a whole fetch (thousands of messages) into Faust events in one go,
        # which held the loop, and every API request with it, for 100-180 ms here.
        "broker_max_poll_records": 200,
        # The live API (engine.worker.api) on Faust's web server, on the loopback
        # interface unless the user asks for a wider one.
        "web_enabled": True,
        "web_bind": settings.web_host,
        # The host in the URL Faust advertises to the other workers (canonical_url),
        # which forward requests for their users there (engine.worker.routing).
        "web_host": advertised_host(settings.web_host),
        "web_port": settings.web_port,
        # Faust's own table, router and statistics views have nothing to serve here.
        "web_router_enabled": False,
        "web_tables_enabled": False,
        "web_stats_enabled": False,
        "web_graph_enabled": False,
        "autodiscover": False,
        "broker_credentials": broker_credentials(settings),
    }


def run_worker(faust_app: faust.App, settings: Settings) -> None:
    """Run ``faust_app`` as a worker on the configured event loop (blocks until it stops)."""
    # Faust reads its --loop option only when `faust` is first imported, which
    # is long before app.main() parses it: without this the worker would run
    # on asyncio's own loop whatever the option says.
    mode.loop.use(settings.event_loop)
    sys.argv = worker_argv(settings)
    faust_app.main()


def worker_argv(settings: Settings) -> list[str]:
    """Arguments for ``app.main()`` to run a worker serving the API on the configured port."""
    level = {"warning": "warn"}.get(settings.log_level.lower(), settings.log_level.lower())
    # Given on the command line too: Faust lets its own WEB_PORT / WEB_BIND
    # variables override the app's settings, but not the command line.
    # uvloop: Faust yields to the event loop once per message, and uvloop's
    # iterations cost a fraction of asyncio's.
    # Faust's banner is for people; a log collector gets only the JSON lines.
    quiet = ["--quiet"] if settings.log_format == "json" else []
    return [
        "engine",
        "--loop",
        settings.event_loop,
        *quiet,
        "worker",
        "--web-port",
        str(settings.web_port),
        "--web-bind",
        settings.web_host,
        "--loglevel",
        level,
    ]


def __getattr__(name: str):
    """``app`` for `faust -A engine.worker.app worker`, built from the environment when asked for."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from engine.worker import build_app  # the package composes the app, its agents and views

    try:
        settings = load_settings()
        check_model(settings)
    except SettingsError as exc:
        # One line and exit code 2, as `python -m engine worker` gives.
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    app = globals()["app"] = build_app(settings)
    return app
