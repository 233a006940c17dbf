"""The serve benchmark's load generator, against a stand-in for the API."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from engine.bench.load import LevelResult, run_level
from engine.bench.serve import cpu_seconds, levels_up_to
from tests.support.stub_http import JsonHandler, serving


class Answer(JsonHandler):
    def do_GET(self) -> None:  # noqa: N802 (the http.server spelling)
        if self.path.startswith("/recommend/"):
            self.reply(200, b'{"items": []}')
        else:
            self.reply(404, b'{"error": "x"}')


def test_the_load_generator_counts_answers_errors_and_stops_at_its_bounds():
    with serving(Answer) as port:
        latencies, errors, seconds = asyncio.run(
            run_level("127.0.0.1", port, ["/recommend/1", "/nowhere"], 4, 10.0, 40, seed=1)
        )
    assert len(latencies) == 40  # the request bound came first, not the 10 s
    assert 0 < errors < 40 and seconds < 10.0
    result = LevelResult.of(4, latencies, errors, seconds)
    assert result.requests == 40 and result.p50_ms <= result.p99_ms <= result.max_ms


def test_concurrency_climbs_to_the_maximum():
    assert levels_up_to(100) == [1, 10, 25, 50, 100]
    assert levels_up_to(30) == [1, 10, 25, 30]
    assert levels_up_to(1) == [1]


def test_the_workers_cpu_time_is_read_from_proc():
    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("no /proc here: the benchmark reports the worker's CPU as null")
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    after = cpu_seconds(os.getpid())
    # /proc counts in clock ticks (10 ms), process_time() finer: they agree to a few ticks.
    assert after - before >= 0.15
    assert abs(after - time.process_time()) < 0.1
    assert cpu_seconds(2**22 + 1) is None  # above Linux's largest pid: no such process
