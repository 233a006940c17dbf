"""A deployment of several workers on the embedded broker: kills, takeovers, a worker joining.

Real worker processes in one consumer group, each with its own store, on a
4-partition topic fed by our keyed producer. One worker is SIGKILLed and
restarted several times during the replay and a third joins midway; at the
end `status`, given every store, must count every message exactly once,
and every worker must hold the whole deployment's items.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

from engine.sources.broker import free_port
from engine.sources.producer import send_messages
from tests.support.api import get_or_none
from tests.support.commands import command_env, engine
from tests.support.messages import KnownStream
from tests.support.workers import Worker, engine_env_with, wait_for

PARTITIONS = 4
EVENTS = 30_000
RATE = 350.0  # events/s: the replay lasts 85 s, long enough for three kills and a join
KILLS = 3


def worker_env(base: dict[str, str], tmp_path, n: int) -> dict[str, str]:
    return engine_env_with(
        base,
        RECO_DB=tmp_path / f"worker-{n}.db",
        RECO_DATADIR=tmp_path / f"faust-{n}",
        RECO_WEB_PORT=free_port(),
        RECO_PARTITIONS=PARTITIONS,
    )


def health(env: dict[str, str]) -> dict | None:
    return get_or_none(f"http://127.0.0.1:{env['RECO_WEB_PORT']}/health")[1]


def partitions_of(env: dict[str, str]) -> list[int]:
    answer = health(env)
    return answer["partitions"] if answer else []


def status(stores: list[str], cwd) -> dict:
    done = engine("status", "--db", ",".join(stores), env=command_env(), cwd=cwd, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_killed_and_joining_workers_count_every_event_once(engine_env, tmp_path):
    stream = KnownStream(users=600, items=400, seed=11, uniform=True)
    messages, kinds = zip(*(stream.next() for _ in range(EVENTS)), strict=True)
    positive = sum(kind == "positive" for kind in kinds)
    positive_items = {
        json.loads(raw)["item"]
        for raw, kind in zip(messages, kinds, strict=True)
        if kind == "positive"
    }
    envs = [worker_env(engine_env, tmp_path, n) for n in (1, 2, 3)]
    stores = [env["RECO_DB"] for env in envs]
    logs = [tmp_path / f"worker-{n}.log" for n in (1, 2, 3)]
    first, second = Worker(envs[0], logs[0]).start(), Worker(envs[1], logs[1]).start()
    third = Worker(envs[2], logs[2])
    workers = [first, second, third]
    try:
        wait_for(
            lambda: partitions_of(envs[0]) and partitions_of(envs[1]),
            120,
            "both workers to own partitions",
            ignoring=(OSError,),
        )
        sender = threading.Thread(
            target=lambda: asyncio.run(
                send_messages(
                    messages,
                    broker=engine_env["RECO_BROKER"],
                    topic=engine_env["RECO_TOPIC"],
                    partitions=PARTITIONS,
                    rate=RATE,
                )
            )
        )
        sender.start()
        for kill in range(KILLS):
            wait_for(
                lambda: partitions_of(envs[1]),
                60,
                "the second worker to own partitions",
                ignoring=(OSError,),
            )
            time.sleep(2)  # a checkpoint or two of its own, then it dies
            second.kill()
            survivors = [envs[0]] + ([envs[2]] if third.alive() else [])
            before = sum(health(env)["events"] for env in survivors)
            # The survivors take the dead worker's partitions within the group's
            # session timeout (6 s) plus a rebalance, and events keep flowing.
            took_over = time.monotonic()
            wait_for(
                lambda s=survivors: (
                    sorted(sum((partitions_of(env) for env in s), [])) == list(range(PARTITIONS))
                ),
                30,
                f"the survivors to own every partition (kill {kill + 1})",
                ignoring=(OSError, TypeError),
            )
            waited = time.monotonic() - took_over
            assert waited < 20, waited
            assert sender.is_alive(), "the replay ended before this kill: slow the producer"
            wait_for(
                lambda s=survivors, b=before: sum(health(env)["events"] for env in s) > b + 200,
                30,
                "events to flow on the survivors during the outage",
                ignoring=(TypeError,),
            )
            second.start()
            if kill == 1:
                third.start()  # a third worker joins mid-replay, and gets partitions
                wait_for(
                    lambda: partitions_of(envs[2]),
                    60,
                    "the third worker to own partitions",
                    ignoring=(OSError,),
                )
        sender.join(120)
        assert not sender.is_alive()
        wait_for(
            lambda: (
                sorted(sum((partitions_of(env) for env in envs), [])) == list(range(PARTITIONS))
            ),
            120,
            "the workers to own every partition between them",
            ignoring=(OSError,),
        )

        def counted() -> dict | None:
            figures = status(stores, tmp_path)
            return figures if figures["received"] >= EVENTS else None

        figures = wait_for(counted, 120, "the deployment to count every message", every=2)
        assert figures["received"] == EVENTS
        assert figures["positive"] == positive
        assert figures["accepted"] + figures["rejected"] == EVENTS
        assert sorted(p["partition"] for p in figures["partitions"]) == list(range(PARTITIONS))
        # One model, not three half-models: every worker holds every liked item.
        wait_for(
            lambda: all(health(env)["items"] == len(positive_items) for env in envs),
            60,
            "every worker to hold every item of the deployment",
        )
        for worker in workers:
            assert worker.terminate() == 0, worker.output()[-3000:]
        figures = status(stores, tmp_path)
        assert (figures["received"], figures["positive"]) == (EVENTS, positive)
        for worker in workers:
            assert "Traceback" not in worker.output(), worker.output()[-3000:]
    finally:
        for worker in workers:
            worker.stop_quietly()
