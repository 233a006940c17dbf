"""`python -m engine COMMAND`: broker, worker, produce, status."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time

from engine import logs
from engine.settings import (
    COMPRESSIONS,
    DEFAULT_BROKER,
    DEFAULT_MODEL,
    ENCODINGS,
    ENV_FOR_FIELD,
    MODELS,
    SettingsError,
    broker_port,
    ensure_datadir,
    load_settings,
    log_format,
    log_level,
)

log = logging.getLogger("engine")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        logs.configure(log_level(args.log_level), log_format())
        return args.run(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    # Every command takes --log-level, so it is given after the command's name.
    logs = argparse.ArgumentParser(add_help=False)
    logs.add_argument("--log-level", help="debug, info, warning, error (RECO_LOG_LEVEL, info)")
    commands = _Commands(parser.add_subparsers(dest="command", required=True), logs)

    broker = commands.add_parser("broker", help="run the embedded Kafka-compatible broker")
    broker.add_argument("--port", help="on 127.0.0.1 (RECO_BROKER_PORT, 19092)")
    broker.set_defaults(run=_broker)

    wait = commands.add_parser("wait-for-broker", help="wait until the broker accepts connections")
    _add_common(wait, db=False)
    wait.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    wait.set_defaults(run=_wait_for_broker)

    worker = commands.add_parser("worker", help="run the engine (Faust worker)")
    _add_common(worker)
    worker.add_argument(
        "--model", help=f"{', '.join(MODELS)} (env RECO_MODEL, default {DEFAULT_MODEL})"
    )
    worker.add_argument("--min-rating", help="positive feedback threshold (RECO_MIN_RATING, 4)")
    worker.add_argument("--eval-fraction", help="share of events evaluated (RECO_EVAL_FRACTION, 1)")
    worker.add_argument(
        "--checkpoint-interval", help="seconds between checkpoints (RECO_CHECKPOINT_INTERVAL, 5)"
    )
    worker.add_argument(
        "--partitions", help="partitions of the topic if the engine creates it (RECO_PARTITIONS, 4)"
    )
    worker.add_argument(
        "--web-port", help="port of the live API on RECO_WEB_HOST (RECO_WEB_PORT, 6066)"
    )
    worker.add_argument("--encoding", help="of the events: json, msgpack (RECO_ENCODING, json)")
    worker.set_defaults(run=_worker)

    produce = commands.add_parser("produce", help="send events to the topic")
    _add_common(produce)
    produce.add_argument(
        "--source",
        default="synthetic",
        help="'synthetic' or a MovieLens file or folder (default synthetic)",
    )
    produce.add_argument(
        "--events", type=int, help="how many (default: all of a file, endless for synthetic)"
    )
    produce.add_argument(
        "--rate", type=float, help="events per second (default: as fast as possible)"
    )
    produce.add_argument(
        "--malformed",
        type=float,
        default=0.0,
        help="synthetic only: fraction of malformed messages (default 0)",
    )
    produce.add_argument("--seed", type=int, default=7, help="synthetic only: random seed")
    produce.add_argument(
        "--partitions", help="partitions if the topic is created (RECO_PARTITIONS, 4)"
    )
    produce.add_argument("--quiet", action="store_true", help="no progress line")
    produce.add_argument(
        "--closed-loop",
        action="store_true",
        help="synthetic only: users also ask the live API for recommendations and "
        "interact with what they are shown",
    )
    produce.add_argument(
        "--api",
        dest="api_url",
        help="the live API for --closed-loop (RECO_API_URL, default http://127.0.0.1:RECO_WEB_PORT)",
    )
    produce.add_argument("--encoding", help="json or msgpack (RECO_ENCODING, json)")
    produce.add_argument(
        "--compression",
        help=f"of the batches sent: {', '.join(COMPRESSIONS)} (RECO_COMPRESSION, none)",
    )
    produce.set_defaults(run=_produce)

    evaluate = commands.add_parser(
        "evaluate", help="replay a MovieLens file test-then-learn; print the figures as JSON"
    )
    evaluate.add_argument("--data", required=True, help="u.data, ratings.dat or ratings.csv")
    evaluate.add_argument("--model", default=None, help="a model name (default: the engine's)")
    evaluate.add_argument("--min-rating", type=float, default=5.0, help="positive if >= (5)")
    evaluate.add_argument("--pretrain", type=float, default=0.2, help="batch-trained share (0.2)")
    evaluate.add_argument("--holdout", type=float, default=0.1, help="then learned share (0.1)")
    evaluate.add_argument("--epochs", type=int, default=1, help="passes over pretrain (1)")
    evaluate.add_argument("--n", type=int, default=10, help="recall@n (10)")
    evaluate.add_argument("--seed", type=int, default=42, help="random seed (42)")
    evaluate.add_argument(
        "--partitions", type=int, default=1, help="simulate a topic of P partitions (1)"
    )
    evaluate.add_argument(
        "--workers", type=int, default=1, help="simulate N workers sharing item statistics (1)"
    )
    evaluate.add_argument(
        "--share-every",
        type=int,
        default=None,
        help="positive events between two exchanges of the workers' increments (4000; 1: no lag)",
    )
    evaluate.set_defaults(run=_evaluate)

    bench = commands.add_parser("bench", help="benchmarks; each prints JSON figures")
    benches = _Commands(bench.add_subparsers(dest="bench", required=True), logs)
    pipeline = benches.add_parser("pipeline", help="engine vs a no-op Faust agent, real broker")
    pipeline.add_argument("--events", type=int, help="events to send (default: all / 100,000)")
    pipeline.add_argument("--source", default="synthetic", help="'synthetic' or a MovieLens file")
    pipeline.add_argument("--runs", type=int, default=1, help="repeat and take medians (1)")
    pipeline.add_argument("--encoding", default="json", help="json or msgpack (json)")
    pipeline.add_argument(
        "--eval-fraction", type=float, default=1.0, help="share of events the engine evaluates (1)"
    )
    workers = "N > 1: events/s of N workers in one group against one's, instead (1)"
    pipeline.add_argument("--workers", type=int, default=1, metavar="N", help=workers)
    _add_quick(pipeline, "at most 300 events, one run")
    pipeline.set_defaults(run=_bench_pipeline)
    serve = benches.add_parser(
        "serve", help="API latency under load and event throughput with and without it"
    )
    serve.add_argument(
        "--data", help="a MovieLens rating file (default ../shared/data/ml-100k/u.data)"
    )
    serve.add_argument(
        "--max-concurrency", type=int, default=100, help="last concurrency level (100)"
    )
    serve.add_argument(
        "--seconds", type=float, default=4.0, help="length of each load level, seconds (4)"
    )
    serve.add_argument(
        "--think-ms",
        type=float,
        default=200.0,
        help="mean pause of each client between requests, ms (200; 0 = back to back)",
    )
    _add_quick(serve, "the file's first 2,000 ratings, at most 4 clients and 0.5 s a level")
    serve.set_defaults(run=_bench_serve)
    model = benches.add_parser("model", help="the model in process as it grows, no broker")
    model.add_argument("--users", type=int, default=1_000_000, help="users to reach (1,000,000)")
    model.add_argument(
        "--items", type=int, default=100_000, help="items in the catalogue (100,000)"
    )
    model.add_argument("--events", type=int, help="events in all (default: 3 per user)")
    model.add_argument(
        "--eval-fraction", type=float, default=0.02, help="share of events evaluated (0.02)"
    )
    model.add_argument("--model", default=DEFAULT_MODEL, help=f"one of {', '.join(MODELS)}")
    model.add_argument("--k", type=int, help="factors, for mf and bprmf (default: the model's)")
    model.add_argument(
        "--checkpoint-every", type=int, default=50_000, help="events between checkpoints (50,000)"
    )
    model.add_argument("--db", help="keep the store here (default: a temporary one)")
    model.add_argument("--seed", type=int, default=7, help="random seed (7)")
    _add_quick(model, "at most 2,000 users and 500 items")
    model.set_defaults(run=_bench_model)

    status = commands.add_parser(
        "status", help="print the latest checkpoint, or a deployment's figures, as JSON"
    )
    status.add_argument(
        "--db",
        help="a store, a comma-separated list of stores or a folder of *.db "
        "(env RECO_DB, default data/reco.db)",
    )
    status.set_defaults(run=_status)
    return parser


class _Commands:
    """Subcommands that all take the given parent parsers' options (--log-level)."""

    def __init__(self, subparsers, *parents: argparse.ArgumentParser):
        self._subparsers, self._parents = subparsers, list(parents)

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        return self._subparsers.add_parser(name, parents=self._parents, **kwargs)


def _add_quick(bench: argparse.ArgumentParser, caps: str) -> None:
    bench.add_argument(
        "--quick",
        action="store_true",
        help=f"a run of seconds that checks the bench works ({caps}); its figures mean nothing",
    )


def _add_common(parser: argparse.ArgumentParser, db: bool = True) -> None:
    parser.add_argument("--broker", help=f"Kafka URL (env RECO_BROKER, default {DEFAULT_BROKER})")
    parser.add_argument("--topic", help="events topic (env RECO_TOPIC, default flurs-events)")
    if db:
        parser.add_argument("--db", help="store path (env RECO_DB, default data/reco.db)")


def _apply_flags(args: argparse.Namespace, several_stores: bool = False):
    """Write given flags into the environment, where engine.settings reads them."""
    for field, env in ENV_FOR_FIELD.items():
        value = getattr(args, field, None)
        if value is not None:
            os.environ[env] = str(value)
    return load_settings(several_stores=several_stores)


def _broker(args) -> int:
    from engine.sources.broker import BrokerError, run_foreground

    if args.port is not None:
        os.environ["RECO_BROKER_PORT"] = args.port
    port = broker_port()
    try:
        return run_foreground(port)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _wait_for_broker(args) -> int:
    from engine.sources.broker import wait_for_broker

    settings = _apply_flags(args)
    if wait_for_broker(settings.broker, args.timeout):
        return 0
    print(f"error: no broker at {settings.broker} after {args.timeout:.0f} s", file=sys.stderr)
    return 1


def _worker(args) -> int:
    settings = _apply_flags(args)  # first: a bad setting stops the command at once
    from engine.sources.broker import port_is_free
    from engine.worker.runtime import check_model
    from storage import StoreError, StoreWriter, WriterLock

    check_model(settings)
    ensure_datadir(settings)
    try:
        StoreWriter(settings.db).close()
        with WriterLock(settings.db):  # one line now, not after Faust's start-up
            pass
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # A broker that is not up yet is waited for by the app itself (engine.worker.app),
    # so `faust -A engine.worker.app worker` behaves the same.
    if not port_is_free(settings.web_host, settings.web_port):
        print(
            f"error: port {settings.web_port} on {settings.web_host} is in use (another "
            "worker?); choose another with --web-port or RECO_WEB_PORT",
            file=sys.stderr,
        )
        return 2
    from engine.worker import build_app
    from engine.worker.app import run_worker

    run_worker(build_app(settings), settings)
    return 0


def _produce(args) -> int:
    settings = _apply_flags(args)  # first: a bad setting stops the command at once
    from engine.sources import producer
    from engine.sources.encoding import transcode
    from engine.sources.kafka import client_options
    from engine.sources.movielens import DatasetError, read_item_names
    from engine.sources.synthetic import SyntheticConfig

    loop = None
    if args.closed_loop and args.source != "synthetic":
        print("error: --closed-loop needs --source synthetic", file=sys.stderr)
        return 2
    if args.source == "synthetic":
        config = SyntheticConfig(malformed=args.malformed, seed=args.seed)
        producer.store_item_names(settings.db, _synthetic_names(config))
        if args.closed_loop:
            from engine.sources.closed_loop import ClosedLoop
            from engine.sources.synthetic import SyntheticStream

            loop = ClosedLoop(SyntheticStream(config), settings.api, api_token=settings.api_token)
            log.info("closed loop: users ask %s for recommendations", settings.api)
            messages = loop.messages(args.events)
        else:
            messages = producer.synthetic_messages(config, args.events)
        total = args.events
    else:
        try:
            messages = producer.movielens_messages(args.source)
            names = read_item_names(args.source)
        except DatasetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.events:
            messages = messages[: args.events]
        producer.store_item_names(settings.db, names)
        total = len(messages)
    messages = transcode(messages, settings.encoding)
    started = time.monotonic()
    sent = asyncio.run(
        producer.send_messages(
            messages,
            broker=settings.broker,
            topic=settings.topic,
            partitions=settings.partitions,
            replication=settings.replication,
            rate=args.rate,
            total=total,
            show_progress=None if not args.quiet else False,
            options=client_options(settings),
            compression=None if settings.compression == "none" else settings.compression,
        )
    )
    elapsed = time.monotonic() - started
    log.info(
        "sent %d events to %s in %.1f s (%.0f events/s)",
        sent,
        settings.topic,
        elapsed,
        sent / elapsed if elapsed else 0,
    )
    if loop is not None:
        stats = loop.stats
        log.info(
            "closed loop: %d recommendation requests (%d failed), %d shown items taken",
            stats.requests,
            stats.failures,
            stats.taken,
        )
    return 0


def _synthetic_names(config) -> dict[str, str]:
    from engine.sources.synthetic import SyntheticStream

    # Names for the items that exist at the start and those that will arrive
    # over a long demo; cheap, and the dashboard never shows a bare id.
    return SyntheticStream(config).item_names(config.initial_items + 5000)


def _evaluate(args) -> int:
    from engine.evaluation.deployment import DEFAULT_SHARE_EVERY, Deployment
    from engine.evaluation.replay import Protocol, evaluate_file
    from engine.settings import DEFAULT_MODEL, MODELS
    from engine.sources.movielens import DatasetError

    model = args.model or DEFAULT_MODEL
    if model not in MODELS:
        print(f"error: unknown model {model!r}; choose one of {', '.join(MODELS)}", file=sys.stderr)
        return 2
    try:
        protocol = Protocol(args.min_rating, args.pretrain, args.holdout, args.epochs, args.n)
        share_every = DEFAULT_SHARE_EVERY if args.share_every is None else args.share_every
        deployment = Deployment(args.partitions, args.workers, share_every)
        result = evaluate_file(args.data, model, protocol, seed=args.seed, deployment=deployment)
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


def _engine_environment() -> None:
    """Check the settings a bench's engine processes inherit, before anything starts."""
    settings = load_settings()
    from engine.worker.runtime import check_model  # after the settings: a bad one stops at once

    check_model(settings)


def _bench_pipeline(args) -> int:
    from engine.bench import pipeline

    _engine_environment()
    if args.runs < 1 or args.workers < 1 or args.encoding not in ENCODINGS:
        print(
            f"error: --runs and --workers must be 1 or more, --encoding one of {ENCODINGS}",
            file=sys.stderr,
        )
        return 2
    options = {key: vars(args)[key] for key in ("runs", "encoding", "eval_fraction", "quick")}
    pipeline.main(args.events, args.source, workers=args.workers, **options)
    return 0


def _bench_serve(args) -> int:
    from engine.bench import serve
    from engine.sources.movielens import DatasetError

    _engine_environment()
    if args.max_concurrency < 1 or args.seconds <= 0 or args.think_ms < 0:
        print(
            "error: --max-concurrency must be 1 or more, --seconds above 0, --think-ms 0 or more",
            file=sys.stderr,
        )
        return 2
    try:
        serve.main(
            args.data, args.max_concurrency, args.seconds, args.think_ms / 1000, quick=args.quick
        )
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _bench_model(args) -> int:
    from engine.bench import model

    if args.model not in MODELS:
        print(
            f"error: unknown model {args.model!r}; choose one of {', '.join(MODELS)}",
            file=sys.stderr,
        )
        return 2
    if not (args.users >= 1 and args.items >= 1 and 0.0 <= args.eval_fraction <= 1.0):
        print(
            "error: --users and --items must be at least 1, --eval-fraction in [0, 1]",
            file=sys.stderr,
        )
        return 2
    bench = model.ModelBench(
        users=args.users,
        items=args.items,
        events=args.events,
        eval_fraction=args.eval_fraction,
        model=args.model,
        k=args.k,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
    )
    model.main(bench, args.db, quick=args.quick)
    return 0


def _status(args) -> int:
    settings = _apply_flags(args, several_stores=True)  # first: a bad setting stops it at once
    from engine.status import status
    from storage import StoreError

    try:
        report = status(list(settings.stores or (settings.db,)))
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 0
