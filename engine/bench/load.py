"""A small HTTP/1.1 load generator for the live API: keep-alive clients on raw asyncio streams.

Light on purpose: it shares a 2-core machine with the worker and the broker,
so every microsecond it spends per request is taken from what it measures.
It understands just enough HTTP for the API's answers (status line,
Content-Length, body).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LevelResult:
    """One concurrency level: latencies in milliseconds, throughput in requests/s."""

    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    requests_per_s: float

    @classmethod
    def of(cls, concurrency: int, latencies: list[float], errors: int, seconds: float):
        ms = np.asarray(latencies) * 1000.0
        have = len(ms) > 0
        return cls(
            concurrency=concurrency,
            requests=len(ms),
            errors=errors,
            seconds=round(seconds, 3),
            p50_ms=round(float(np.percentile(ms, 50)), 3) if have else None,
            p99_ms=round(float(np.percentile(ms, 99)), 3) if have else None,
            max_ms=round(float(ms.max()), 3) if have else None,
            requests_per_s=round(len(ms) / seconds, 1) if seconds else 0.0,
        )


async def run_level(
    host: str,
    port: int,
    paths: Sequence[str],
    concurrency: int,
    seconds: float,
    max_requests: int,
    think_s: float = 0.0,
    seed: int = 0,
) -> tuple[list[float], int, float]:
    """``concurrency`` clients, each on its own connection, send GET requests one after
    another (pausing ``think_s`` seconds on average between them) until ``seconds``
    pass or ``max_requests`` were sent in all.

    Returns every answer's latency (seconds), the count of non-200 answers and
    the seconds the level took.
    """
    rng = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    budget = [max_requests]

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        if think_s:
            # Clients that think start at random moments, like users arriving; a
            # hundred first requests in the same instant would be a burst of their own.
            await asyncio.sleep(rng.uniform(0.0, think_s))
        try:
            while time.perf_counter() < deadline and budget[0] > 0:
                budget[0] -= 1
                request = f"GET {rng.choice(paths)} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(
                    "ascii"
                )
                started = time.perf_counter()
                writer.write(request)
                status = await _read_response(reader)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors += 1
                if think_s:
                    await asyncio.sleep(rng.expovariate(1.0 / think_s))
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - started


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status
