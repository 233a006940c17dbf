"""`python -m engine bench pipeline`: the engine's throughput against a no-op Faust agent.

Starts the embedded broker on a free port, fills one topic with the same
events, then consumes it under fresh consumer groups, each in a process of
its own: with a no-op agent (Faust's own ceiling), with the full engine
(default model, every event evaluated, checkpoints every 5 s), and -- for
MovieLens files in JSON -- with the original FluRS + Faust write-up's
engine (pre-registered FluRS MF, no evaluation), on the engine's consumer
and on Faust's own as the write-up ran it. ``runs`` repeats them in turn, since other work on the machine moves single figures; the printed
figures are medians. Prints one JSON object on its last line.

``workers`` (``--workers N``, N > 1) measures something else: N real
workers in one consumer group against one, on a replay that lasts at least
20 s a run (engine.bench.scale, which says how it times them).

``quick`` (``--quick``) caps the run at 300 events, once: it checks that
every consumer runs and the JSON keys are there, in seconds; its figures
mean nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from engine.sources.broker import EmbeddedBroker, free_port
from engine.sources.encoding import transcode
from engine.sources.producer import movielens_messages, send_messages, synthetic_messages
from engine.sources.synthetic import SyntheticConfig
from storage import StoreReader

TOPIC = "bench-events"
QUICK_EVENTS = 300  # --quick: at most this many events, one run


def run(
    events: int | None,
    source: str,
    checkpoint_interval: float = 5.0,
    timeout: float = 600.0,
    runs: int = 1,
    encoding: str = "json",
    eval_fraction: float = 1.0,
) -> dict:
    if source == "synthetic":
        messages = list(synthetic_messages(SyntheticConfig(), events or 100_000))
    else:
        messages = movielens_messages(source)[:events] if events else movielens_messages(source)
    messages = list(transcode(messages, encoding))
    # The write-up's engine reads MovieLens ids as numbers, from JSON.
    modes = ["noop", "engine"] + (
        ["original", "original_stock"] if source != "synthetic" and encoding == "json" else []
    )
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    peak_rss: dict[str, float] = {mode: 0.0 for mode in modes}
    checkpoints = []
    with tempfile.TemporaryDirectory(prefix="reco-bench-") as tmp, EmbeddedBroker() as broker:
        asyncio.run(
            send_messages(
                messages, broker=broker.url, topic=TOPIC, partitions=1, show_progress=False
            )
        )
        env = {
            **os.environ,
            "RECO_BROKER": broker.url,
            "RECO_TOPIC": TOPIC,
            "RECO_DATADIR": str(Path(tmp) / "faust"),
            "RECO_LOG_LEVEL": "warning",
            "RECO_BENCH_EVENTS": str(len(messages)),
            "RECO_CHECKPOINT_INTERVAL": str(checkpoint_interval),
            "RECO_EVAL_FRACTION": str(eval_fraction),
            "RECO_ENCODING": encoding,
        }
        for attempt in range(runs):
            for mode in modes:
                db = Path(tmp) / f"reco-{attempt}.db"
                result = _consume(mode, {**env, "RECO_DB": str(db)}, Path(tmp), timeout)
                rates[mode].append(result["events_per_s"])
                peak_rss[mode] = max(peak_rss[mode], result["peak_rss_mb"])
                if mode == "engine":
                    checkpoint = StoreReader(db).latest_checkpoint()
                    assert checkpoint.totals.received == len(messages), "the engine missed events"
                    checkpoints.append(checkpoint.id)
                    model = checkpoint.model
    median = {mode: statistics.median(values) for mode, values in rates.items()}
    result = {
        "benchmark": "pipeline",
        "source": source,
        "events": len(messages),
        "encoding": encoding,
        "eval_fraction": eval_fraction,
        "runs": runs,
        "noop_events_per_s": round(median["noop"]),
        "engine_events_per_s": round(median["engine"]),
        "ratio": round(median["engine"] / median["noop"], 3),
        "engine_peak_rss_mb": round(peak_rss["engine"], 1),
        "noop_peak_rss_mb": round(peak_rss["noop"], 1),
        "checkpoints": round(statistics.median(checkpoints)),
        "model": model,
        "cores": os.cpu_count(),
        "all_events_per_s": {mode: [round(v) for v in values] for mode, values in rates.items()},
    }
    if "original" in median:
        result["original_events_per_s"] = round(median["original"])
        result["engine_vs_original"] = round(median["engine"] / median["original"], 3)
        result["original_stock_events_per_s"] = round(median["original_stock"])
        result["engine_vs_original_stock"] = round(median["engine"] / median["original_stock"], 3)
    return result


def _consume(mode: str, env: dict, tmp: Path, timeout: float) -> dict:
    result = tmp / f"{mode}.json"
    result.unlink(missing_ok=True)
    env = {
        **env,
        "RECO_GROUP": f"bench-{mode}-{uuid.uuid4().hex[:8]}",
        "RECO_BENCH_RESULT": str(result),
        "RECO_WEB_PORT": str(free_port()),  # workers serve the API; 6066 may be taken
    }
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "engine.bench.consume", mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if not result.exists():
        raise RuntimeError(
            f"the {mode} run ended (code {completed.returncode}) without a "
            f"result after {time.monotonic() - started:.0f} s:\n"
            f"{completed.stdout[-2000:]}{completed.stderr[-2000:]}"
        )
    return json.loads(result.read_text())


def main(
    events: int | None,
    source: str,
    runs: int = 1,
    encoding: str = "json",
    eval_fraction: float = 1.0,
    quick: bool = False,
    workers: int = 1,
) -> None:
    """Print the figures as JSON; ``workers`` above 1 measures N workers against one instead
    (engine.bench.scale)."""
    if quick:
        events, runs = min(events or QUICK_EVENTS, QUICK_EVENTS), 1
    if workers > 1:
        from engine.bench import scale

        result = scale.run(
            source, workers, runs, events, encoding=encoding, eval_fraction=eval_fraction,
            quick=quick,
        )  # fmt: skip
    else:
        result = run(events, source, runs=runs, encoding=encoding, eval_fraction=eval_fraction)
    print(json.dumps(result))
