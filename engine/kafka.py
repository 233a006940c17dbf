"""Small helpers on aiokafka: declaring the events topic, connection settings."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from engine.broker import host_port

log = logging.getLogger(__name__)


def bootstrap_servers(broker_url: str) -> str:
    host, port = host_port(broker_url)
    return f"{host}:{port}"


async def declare_topic(broker_url: str, topic: str, partitions: int) -> None:
    """Create ``topic`` with ``partitions`` unless it exists (the broker would make 4)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(broker_url))
    await admin.start()
    try:
        result = await admin.create_topics([NewTopic(topic, partitions, 1)])
        for _, code, *_ in getattr(result, "topic_errors", []) or getattr(result, "topics", []):
            if code not in (0, TopicAlreadyExistsError.errno):
                log.warning("declaring %s: broker error code %s", topic, code)
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()
