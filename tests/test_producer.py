"""Our producer follows Kafka's conventions: keyed by user, every bootstrap host, compression."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import defaultdict

import msgpack
import pytest

from engine.sources.broker import free_port, wait_for_broker
from engine.sources.encoding import event_key
from engine.sources.kafka import bootstrap_servers
from engine.sources.producer import send_messages
from tests.support.messages import message
from tests.support.topics import read_topic


def test_an_event_is_keyed_by_its_user_id_whatever_its_encoding():
    assert event_key(message(196, 242)) == b"196"
    assert event_key(message("u7", "i1")) == b"u7"
    assert event_key(msgpack.packb({"user": 196, "item": 242})) == b"196"


@pytest.mark.parametrize(
    "payload", [b"not json", b"[1, 2]", json.dumps({"user": True}).encode(), b"{}"]
)
def test_a_message_without_a_user_id_has_no_key(payload):
    assert event_key(payload) is None


def test_every_bootstrap_host_of_a_cluster_reaches_the_client():
    assert bootstrap_servers("kafka://h1:9092;h2:9093") == "h1:9092,h2:9093"
    assert bootstrap_servers("kafka://h1:9092;kafka://h2:9093") == "h1:9092,h2:9093"
    assert bootstrap_servers("kafka://h1:9092,h2") == "h1:9092,h2:9092"


def test_waiting_for_a_cluster_needs_only_one_of_its_hosts():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        live = listening.getsockname()[1]
        dead = free_port()
        assert wait_for_broker(f"kafka://127.0.0.1:{dead};127.0.0.1:{live}", timeout=2)
    assert not wait_for_broker(f"kafka://127.0.0.1:{dead}", timeout=0.5)


@pytest.mark.integration
@pytest.mark.parametrize("compression", [None, "gzip", "snappy", "lz4", "zstd"])
def test_a_users_events_stay_in_order_on_one_partition(broker, tmp_path, compression):
    """Sent through a bootstrap list whose first host is down, to a topic of 4 partitions."""
    topic = f"keyed-{compression}-{tmp_path.name[-20:]}".replace("_", "-")
    events = [message(f"u{n % 7}", f"i{n}", timestamp=1_700_000_000 + n) for n in range(300)]
    events.insert(50, b"not json")
    url = f"kafka://127.0.0.1:{free_port()};127.0.0.1:{broker.port}"
    sent = asyncio.run(
        send_messages(events, broker=url, topic=topic, partitions=4, compression=compression)
    )
    assert sent == len(events)

    received = asyncio.run(read_topic(broker.url, topic))
    partitions_of = defaultdict(set)
    for partition, key, value in received:
        if key is not None:
            user = json.loads(value)["user"]
            assert key == user.encode()
            partitions_of[user].add(partition)
    assert len(partitions_of) == 7
    assert all(len(partitions) == 1 for partitions in partitions_of.values())
    assert len({next(iter(p)) for p in partitions_of.values()}) > 1  # spread, not one partition
    by_user = defaultdict(list)
    for _, key, value in received:
        if key is not None:
            by_user[key].append(value)
    for key, values in by_user.items():
        assert values == [e for e in events if event_key(e) == key]
    assert sorted(v for _, k, v in received if k is None) == [b"not json"]
