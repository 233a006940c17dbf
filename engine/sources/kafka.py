"""Small helpers on aiokafka: declaring topics, their partitions and ends, connection settings."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faust.auth import Credentials, SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from engine.settings import Settings
from engine.sources.broker import bootstrap_addresses

log = logging.getLogger(__name__)

FETCH_FOR_END_MS = 500  # how long end_offsets() waits for its fetch of one partition


def bootstrap_servers(broker_url: str) -> str:
    """'h1:9092,h2:9092' from Faust's 'kafka://h1:9092;h2:9092': every host, so any one may be down."""
    return ",".join(
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        for host, port in bootstrap_addresses(broker_url)
    )


def broker_credentials(settings: Settings) -> Credentials | None:
    """The Faust credentials for the configured security protocol; None for PLAINTEXT.

    TLS trusts the system's CAs, or only those in ``ssl_cafile`` when it is
    given; ``ssl_certfile`` (and ``ssl_keyfile``) add a client certificate.
    """
    protocol = settings.broker_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=settings.ssl_cafile or None)
        if settings.ssl_certfile:
            context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile or None)
    if protocol == "SSL":
        return SSLCredentials(context)
    return SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password,
        mechanism=settings.sasl_mechanism,
        ssl_context=context,
    )


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for the broker and its security settings.

    Built from the same credentials object the Faust app uses, so the
    producer and the engine connect the same way.
    """
    return {
        "bootstrap_servers": bootstrap_servers(settings.broker),
        **credentials_to_aiokafka_auth(broker_credentials(settings)),
    }


async def declare_topic(
    broker_url: str,
    topic: str,
    partitions: int,
    options: dict[str, Any] | None = None,
    replication: int = 1,
    config: dict[str, str] | None = None,
) -> None:
    """Create ``topic`` with ``partitions`` and ``replication`` copies unless it exists.

    Left to itself the broker would create it with its own defaults (4
    partitions on the embedded one). ``options`` are aiokafka client arguments
    (see client_options); by default a plaintext connection to ``broker_url``.
    ``config`` holds topic settings (e.g. ``cleanup.policy``).
    """
    options = options or {"bootstrap_servers": bootstrap_servers(broker_url)}
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        result = await admin.create_topics(
            [NewTopic(topic, partitions, replication, topic_configs=config or {})]
        )
        for _, code, *_ in getattr(result, "topic_errors", []) or getattr(result, "topics", []):
            if code not in (0, TopicAlreadyExistsError.errno):
                log.warning("declaring %s: broker error code %s", topic, code)
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def partition_count(topic: str, options: dict[str, Any]) -> int | None:
    """How many partitions ``topic`` has, as the broker says; None if it does not know the topic."""
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    for entry in described:
        if entry.get("topic") == topic and not entry.get("error_code"):
            return len(entry.get("partitions") or []) or None
    return None


async def end_offsets(partitions: list, options: dict[str, Any]) -> dict:
    """The offset after the last message of each of ``partitions`` (aiokafka TopicPartitions).

    Asked of the broker twice: by ListOffsets and by a fetch at that point,
    whichever is further. The embedded broker answers ListOffsets with the
    start of the partition's last record batch plus one (35 messages in
    batches of 7 gave 29), while a fetch reports the true high watermark.
    """
    consumer = AIOKafkaConsumer(**options, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(partitions))
        ends = dict(await consumer.end_offsets(list(partitions)))
        for tp, end in ends.items():
            if not end:
                continue  # no record batch at all
            consumer.seek(tp, end - 1)
            await consumer.getmany(tp, timeout_ms=FETCH_FOR_END_MS, max_records=1)
            ends[tp] = max(end, consumer.highwater(tp) or 0)
        return ends
    finally:
        await consumer.stop()
