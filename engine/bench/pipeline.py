"""`python -m engine bench pipeline`: the engine's throughput against a no-op Faust agent.

Starts the embedded broker on a free port, fills one topic with the same
events, then consumes it twice under fresh consumer groups: once with a
no-op agent (Faust's own ceiling) and once with the full engine (default
model, every event evaluated, checkpoints every 5 s). Prints one JSON object
on its last line.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from engine.broker import EmbeddedBroker, free_port
from engine.producer import movielens_messages, send_messages, synthetic_messages
from engine.synthetic import SyntheticConfig
from storage import StoreReader

TOPIC = "bench-events"


def run(
    events: int | None, source: str, checkpoint_interval: float = 5.0, timeout: float = 600.0
) -> dict:
    if source == "synthetic":
        messages = list(synthetic_messages(SyntheticConfig(), events or 100_000))
    else:
        messages = movielens_messages(source)[:events] if events else movielens_messages(source)
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
            "RECO_EVAL_FRACTION": "1",
        }
        noop = _consume("noop", env, Path(tmp), timeout)
        engine = _consume(
            "engine", {**env, "RECO_DB": str(Path(tmp) / "reco.db")}, Path(tmp), timeout
        )
        checkpoint = StoreReader(Path(tmp) / "reco.db").latest_checkpoint()
        checkpoints = checkpoint.id
        assert checkpoint.totals.received == len(messages), "the engine missed events"
    return {
        "benchmark": "pipeline",
        "source": source,
        "events": len(messages),
        "noop_events_per_s": round(noop["events_per_s"]),
        "engine_events_per_s": round(engine["events_per_s"]),
        "ratio": round(engine["events_per_s"] / noop["events_per_s"], 3),
        "engine_peak_rss_mb": round(engine["peak_rss_mb"], 1),
        "noop_peak_rss_mb": round(noop["peak_rss_mb"], 1),
        "checkpoints": checkpoints,
        "model": checkpoint.model,
        "cores": os.cpu_count(),
    }


def _consume(mode: str, env: dict, tmp: Path, timeout: float) -> dict:
    result = tmp / f"{mode}.json"
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


def main(events: int | None, source: str) -> None:
    print(json.dumps(run(events, source)))
