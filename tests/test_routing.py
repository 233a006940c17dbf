"""Any worker answers GET /recommend for any user: it asks the user's owner, once at most."""

from __future__ import annotations

import asyncio
import json

import pytest

from engine.settings import Settings
from engine.sources.broker import free_port
from engine.sources.kafka import declare_topic
from engine.sources.producer import send_messages
from engine.worker.routing import FORWARDED_HEADER, advertised_host, user_partition
from tests.support.api import get
from tests.support.messages import message
from tests.support.topics import read_topic
from tests.support.workers import Worker, engine_env_with, freeze, thaw, wait_for

TOKEN = "a-test-token-long-enough"
USERS = [f"u{n}" for n in range(24)]
STARTING = (OSError, ValueError, KeyError)


def test_a_users_partition_is_the_java_clients():
    """Kafka's own murmur2 test vectors (clients/.../utils/UtilsTest.java), as signed ints."""
    java = {"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536}
    for key, hashed in java.items():
        for partitions in (1, 4, 7, 1000):
            assert user_partition(key, partitions) == (hashed & 0x7FFFFFFF) % partitions


def test_a_worker_bound_to_every_interface_advertises_the_machines_name():
    assert advertised_host("0.0.0.0") not in ("0.0.0.0", "")
    assert advertised_host("10.0.0.5") == "10.0.0.5"


@pytest.mark.integration
def test_our_producer_puts_each_user_on_the_partition_the_api_computes(broker, tmp_path):
    topic = f"where-{tmp_path.name[-20:]}".replace("_", "-")
    partitions = 4
    events = [message(user, "i1") for user in USERS]
    asyncio.run(send_messages(events, broker=broker.url, topic=topic, partitions=partitions))
    landed = {
        json.loads(value)["user"]: p for p, _, value in asyncio.run(read_topic(broker.url, topic))
    }
    assert landed == {user: user_partition(user, partitions) for user in USERS}


def _ask(api: str, user: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    return get(f"{api}/recommend/{user}?n=5&preview=1", token=TOKEN, headers=headers)


@pytest.mark.integration
def test_two_workers_answer_for_every_user_as_its_owner_does(engine_env, tmp_path):
    partitions = Settings().partitions
    assert partitions > 1, "the default topic has room for a second worker"
    env = engine_env_with(engine_env, RECO_API_TOKEN=TOKEN)
    second_env = engine_env_with(
        env,
        RECO_DB=tmp_path / "worker-2.db",
        RECO_DATADIR=tmp_path / "faust-2",
        RECO_WEB_PORT=free_port(),
    )
    apis = [f"http://127.0.0.1:{e['RECO_WEB_PORT']}" for e in (env, second_env)]
    workers = [
        Worker(e, tmp_path / f"worker-{n}.log").start() for n, e in enumerate((env, second_env))
    ]
    try:
        # Both in one group: the topic's partitions split between them.
        def owned() -> list[list[int]] | None:
            found = [get(f"{api}/health")[1]["partitions"] for api in apis]
            return all(found) and sorted(sum(found, [])) == list(range(partitions)) and found

        by_worker = wait_for(owned, 120, "both workers to own partitions", ignoring=STARTING)
        owner_of = {p: api for api, ps in zip(apis, by_worker, strict=True) for p in ps}

        events = [message(user, f"i{n % 9}") for n in range(3) for user in USERS]
        asyncio.run(
            send_messages(
                events, broker=env["RECO_BROKER"], topic=env["RECO_TOPIC"], partitions=partitions
            )
        )
        wait_for(
            lambda: sum(get(f"{api}/health")[1]["events"] for api in apis) == len(events),
            60,
            "every event through one worker or the other",
            ignoring=STARTING,
        )
        owners = {owner_of[user_partition(user, partitions)] for user in USERS}
        assert owners == set(apis), "the users of the test live on both workers"

        for user in USERS:
            owner = owner_of[user_partition(user, partitions)]
            status, own = _ask(owner, user)
            assert status == 200 and own["worker"] == owner and own["fallback"] is False
            for api in apis:
                assert _ask(api, user) == (200, own), (user, api)

        # Both require the token (it went on with every forwarded request above).
        other_user = next(u for u in USERS if owner_of[user_partition(u, partitions)] != apis[0])
        assert get(f"{apis[0]}/recommend/{other_user}")[0] == 401

        # A forwarded request is never sent on: no two workers can bounce one.
        owner = owner_of[user_partition(other_user, partitions)]
        status, answer = _ask(apis[0], other_user, {FORWARDED_HEADER: apis[1]})
        assert status == 503 and answer["owner"] == owner and owner in answer["error"]

        # An owner that does not answer: the other worker says where to ask.
        freeze(workers[1].pid)
        try:
            status, answer = _ask(apis[0], other_user)
        finally:
            thaw(workers[1].pid)
        assert status == 503
        assert answer["owner"] == apis[1] and answer["partition"] == user_partition(
            other_user, partitions
        )
        assert apis[1] in answer["error"] and "did not answer" in answer["error"]

        for worker in workers:
            assert worker.terminate() == 0, worker.output()[-3000:]
        assert not any("Traceback" in worker.output() for worker in workers)
    finally:
        for worker in workers:
            worker.stop_quietly()


@pytest.mark.integration
def test_a_topic_that_exists_keeps_its_partitions(broker, engine_env, tmp_path):
    """RECO_PARTITIONS is for a topic the engine creates; Kafka cannot shrink one."""
    asyncio.run(declare_topic(broker.url, engine_env["RECO_TOPIC"], 2))
    assert Settings().partitions != 2
    worker = Worker(engine_env, tmp_path / "worker.log").start()
    api = f"http://127.0.0.1:{engine_env['RECO_WEB_PORT']}"
    try:
        health = wait_for(
            lambda: (h := get(f"{api}/health")[1])["partitions"] and h,
            90,
            "partitions",
            ignoring=STARTING,
        )
        assert health["partitions"] == [0, 1]
        assert worker.terminate() == 0, worker.output()[-3000:]
    finally:
        worker.stop_quietly()
