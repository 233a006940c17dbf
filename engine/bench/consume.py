"""One timed consumer run, in a process of its own: `python -m engine.bench.consume MODE`.

MODE is noop (Faust's own ceiling), engine, original (the write-up's engine
on the engine's consumer), or original_stock (the write-up's engine as it
was written: Faust's own consumer on asyncio's event loop).

Reads its settings from the environment like the engine (RECO_*), plus
RECO_BENCH_EVENTS (stop after this many messages) and RECO_BENCH_RESULT (where
to write the JSON result). The rate is measured from the first message handled
to the last, so the group join and start-up are not counted.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time


class Stopwatch:
    """Counts handled messages; at the last one, writes the result and stops the worker."""

    def __init__(self, expected: int, result_path: str):
        self.expected = expected
        self.result_path = result_path
        self.count = 0
        self.first_at = 0.0
        self.first = 0  # messages handled at the first tick: the rate counts those after it

    def tick(self, handled: int = 1) -> None:
        """``handled`` more messages are done."""
        if not handled:
            return
        if not self.count:
            self.first_at = time.perf_counter()
            self.first = handled
        before, self.count = self.count, self.count + handled
        if before < self.expected <= self.count:
            elapsed = time.perf_counter() - self.first_at
            with open(self.result_path, "w") as f:
                json.dump(
                    {
                        "events": self.count,
                        "seconds": elapsed,
                        "events_per_s": (self.count - self.first) / elapsed if elapsed else None,
                        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    },
                    f,
                )
            os.kill(os.getpid(), signal.SIGTERM)  # a clean stop: the engine checkpoints


def run_noop(stopwatch: Stopwatch) -> None:
    from engine.settings import load_settings
    from engine.worker.app import app_options
    from engine.worker.consumer import BatchingApp

    settings = load_settings()
    app = BatchingApp(settings.group, **app_options(settings))
    topic = app.topic(settings.topic, value_serializer="raw", key_serializer="raw")

    @app.agent(topic)
    async def noop(stream):
        async for _event in stream.events():
            stopwatch.tick()

    _start(app, settings)


def run_engine(stopwatch: Stopwatch) -> None:
    from engine.settings import load_settings
    from engine.worker import build_app
    from engine.worker.runtime import EngineRuntime

    settings = load_settings()
    app = build_app(settings)
    app.runtime = EngineRuntime(settings)
    processor = app.runtime.processor
    process_run = processor.process_run

    def timed_run(messages):
        handled = 0

        def counted():
            nonlocal handled
            for message in messages:
                handled += 1
                yield message

        process_run(counted())
        stopwatch.tick(handled)

    processor.process_run = timed_run
    _start(app, settings)


def run_original(stopwatch: Stopwatch, stock: bool = False) -> None:
    """The original FluRS + Faust write-up's engine, as a reference.

    Faust decodes each value as JSON; FluRS's MFRecommender, pre-registered
    with MovieLens 100k's 943 users and 1682 items, learns each positive
    event; nothing is evaluated, counted or checkpointed. ``stock``: on
    Faust's own consumer and asyncio's loop, as the write-up ran it;
    otherwise on the engine's (BatchingApp, uvloop).
    """
    import dataclasses

    import faust

    from engine.models.mf import OriginalMF
    from engine.settings import load_settings
    from engine.worker.app import app_options
    from engine.worker.consumer import BatchingApp

    settings = load_settings()
    if stock:
        settings = dataclasses.replace(settings, event_loop="aio")
    app_class = faust.App if stock else BatchingApp
    app = app_class(settings.group, **app_options(settings))
    topic = app.topic(settings.topic, value_serializer="json", key_serializer="raw")
    model = OriginalMF()

    @app.agent(topic)
    async def learn(stream):
        async for event in stream:
            if event["rating"] >= settings.min_rating:
                model.learn_one(int(event["user"]) - 1, int(event["item"]) - 1)
            stopwatch.tick()

    _start(app, settings)


def _start(app, settings) -> None:
    from engine.worker.app import run_worker

    run_worker(app, settings)


if __name__ == "__main__":
    watch = Stopwatch(int(os.environ["RECO_BENCH_EVENTS"]), os.environ["RECO_BENCH_RESULT"])
    modes = {
        "noop": run_noop,
        "engine": run_engine,
        "original": run_original,
        "original_stock": lambda watch: run_original(watch, stock=True),
    }
    modes[sys.argv[1]](watch)
