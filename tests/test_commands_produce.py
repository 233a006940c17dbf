"""`produce`: each source, format and codec, as the worker run (tests/support/command_jobs.py) saw it."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from storage import StoreReader
from tests.support.command_jobs import MIN_RATING, SYNTHETIC_EVENTS, UDATA_EVENTS, needs
from tests.support.rating_files import (
    MOVIES_CSV_NAMES,
    MOVIES_DAT_NAMES,
    RATINGS_CSV,
    RATINGS_DAT,
    U_DATA,
    U_ITEM_NAMES,
    expected_replay,
)
from tests.support.readme import covers
from tests.support.topics import read_topic

# The slow commands (tests/support/command_jobs.py) start with the first test of the
# test_commands_* modules, whichever runs first.
pytestmark = pytest.mark.usefixtures("command_jobs")


@pytest.mark.integration
@needs("worker")
@covers("produce", "--source", "--events", "--rate", "--quiet", "--broker", "--topic", "--db")
@covers("produce", "--partitions")
def test_produce_replays_u_data_at_its_rate_and_quietly(worker_run):
    produced = worker_run.produced["u.data"]
    assert produced.code == 0, produced.output
    assert produced.count == UDATA_EVENTS
    rate = float(re.search(r"\((\d+) events/s\)", produced.output)[1])
    assert rate <= 52  # --rate 50
    assert "ETA" not in produced.output  # --quiet, on a terminal
    # acks=all, and idempotence where the broker grants producer ids: the embedded one does not.
    assert "grants no producer id for idempotence" in produced.output


@pytest.mark.integration
@needs("worker")
@covers("produce", "--source")
def test_produce_shows_rate_and_eta_on_a_terminal(worker_run):
    produced = worker_run.produced["ratings.dat"]
    assert produced.code == 0, produced.output
    assert produced.count == len(RATINGS_DAT)
    assert re.search(
        rf"{len(RATINGS_DAT)}/{len(RATINGS_DAT)} events\s+[\d,]+/s\s+ETA", produced.output
    )


@pytest.mark.integration
@needs("worker")
@covers("produce", "--source", "--encoding")
def test_produce_stores_the_item_names_of_each_movielens_format(worker_run):
    reader = StoreReader(worker_run.db)
    seen = {
        item.item: item.name
        for user in map(str, range(1, 10))
        for item in reader.history(user, 500)
    }
    for ratings, names in (
        (expected_replay(U_DATA, UDATA_EVENTS), U_ITEM_NAMES),
        (RATINGS_DAT, MOVIES_DAT_NAMES),
        (RATINGS_CSV, MOVIES_CSV_NAMES),
    ):
        liked = {r.item for r in ratings if r.rating >= MIN_RATING}
        assert liked and liked <= set(seen)
        assert {item: seen[item] for item in liked} == {item: names[item] for item in liked}


@pytest.mark.integration
@needs("worker")
@covers("produce", "--source", "--malformed")
def test_produce_sends_the_synthetic_stream_with_its_malformed_share(worker_run):
    produced = worker_run.produced["synthetic"]
    assert produced.code == 0 and produced.count == SYNTHETIC_EVENTS
    reasons = {event.reason for event in StoreReader(worker_run.db).rejected_events(100)}
    assert reasons and all(reasons)


@pytest.mark.integration
@needs("worker")
@covers("produce", "--closed-loop", "--api")
def test_closed_loop_users_ask_the_api_and_their_impressions_are_stored(worker_run):
    produced = worker_run.produced["closed loop"]
    assert produced.code == 0, produced.output
    found = re.search(r"(\d+) recommendation requests \((\d+) failed\)", produced.output)
    assert found, produced.output
    requests, failed = int(found[1]), int(found[2])
    assert requests > 0 and failed < requests
    assert worker_run.looped is not None
    assert worker_run.looped.totals.received >= worker_run.counted.totals.received + 300
    online = json.loads(worker_run.status.stdout)["online"]
    impressions = sum(variant["impressions"] for variant in online.values())
    # Every answer is an impression; one that came after the client gave up (2 s) too.
    assert requests - failed <= impressions <= requests


@pytest.mark.integration
@needs("worker")
def test_produce_keys_each_event_by_its_user_so_a_user_stays_on_one_partition(worker_run, broker):
    records = asyncio.run(read_topic(broker.url, "commands-worker"))
    assert len(records) == worker_run.final.totals.received
    partitions: dict[str, set[int]] = {}
    times: dict[tuple[int, str], list[float]] = {}
    for partition, key, value in records:
        try:
            event = json.loads(value)
        except ValueError:
            assert key is None  # a malformed message has no user to key it by
            continue
        if not isinstance(event, dict) or not isinstance(event.get("user"), str | int):
            assert key is None
            continue
        assert key == str(event["user"]).encode()
        partitions.setdefault(key.decode(), set()).add(partition)
        if str(event["item"]).isdigit() and int(event["item"]) <= 20:  # the u.data replay
            times.setdefault((partition, key.decode()), []).append(event["timestamp"])
    assert all(len(found) == 1 for found in partitions.values())
    assert len({p for found in partitions.values() for p in found}) == 2
    assert times and all(t == sorted(t) for t in times.values())  # in timestamp order
