"""Which worker owns a user, and asking it: any worker answers for any user.

Events are keyed by user id (engine.sources.encoding.event_key), and Kafka's
default partitioner for keyed messages puts a key on partition
``murmur2(key) mod partitions``: the Java client, aiokafka and kafka-python
agree; librdkafka (confluent-kafka) does only with
``partitioner=murmur2_random``. Faust's partition assignor sends every member
the web URL of every member with each assignment (``app.topic_route`` reads
it); a worker that does not own a user's partition forwards the request to
the worker that does, once at most, and says where to ask when that worker
does not answer.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web as aiohttp_web
from aiokafka.partitioner import murmur2
from yarl import URL

if TYPE_CHECKING:
    from engine.worker.app import EngineApp

__all__ = [
    "FORWARDED_HEADER",
    "Owner",
    "advertised_host",
    "forward",
    "is_forwarded",
    "owner_of",
    "user_partition",
    "where_to_ask",
]

# Set on a forwarded request to the forwarding worker's URL: a request that
# carries it is never forwarded again, so no two workers can bounce one.
FORWARDED_HEADER = "X-Reco-Forwarded-By"
FORWARD_TIMEOUT_S = 2.0  # seconds the owner has to answer a forwarded request
_PASSED_ON = ("Retry-After", "WWW-Authenticate")  # the owner's headers a client may need


@dataclass(frozen=True)
class Owner:
    """The worker that owns a user's partition, as this worker's last assignment says."""

    partition: int
    url: str | None  # its web URL; None when the assignment names no worker for it
    is_self: bool  # this worker: answer here


def user_partition(user: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives the events keyed by ``user``.

    The key is the id's UTF-8 bytes, as our producer sends it.

    >>> [user_partition(user, 4) for user in ("1", "2", "196")]
    [3, 0, 0]
    """
    return (murmur2(user.encode()) & 0x7FFFFFFF) % partitions


def owner_of(app: EngineApp, user: str) -> Owner | None:
    """Who owns ``user`` now; None before the first assignment (answer here then)."""
    topic = app.settings.topic
    urls = {
        partition: url
        for url, topics in app.assignor.external_topics_metadata().items()
        for partition in topics.get(topic, ())
    }
    if not urls:
        return None
    # Every partition of the topic is assigned to some member, so the
    # assignment spans them all: the highest one gives the count.
    partition = user_partition(user, max(urls) + 1)
    url = urls.get(partition)
    here = str(app.conf.canonical_url)
    is_self = partition in app.owned_partitions() or url == here
    return Owner(partition=partition, url=url, is_self=is_self)


def is_forwarded(request: aiohttp_web.Request) -> bool:
    """True for a request another worker forwarded here: it is answered here, never sent on."""
    return FORWARDED_HEADER in request.headers


async def forward(
    app: EngineApp, request: aiohttp_web.Request, owner: Owner, user: str
) -> aiohttp_web.Response:
    """The owner's answer to ``request`` (its status and body), or 503 saying where to ask.

    The path, query string and ``Authorization`` header go on unchanged.
    """
    headers = {FORWARDED_HEADER: str(app.conf.canonical_url)}
    if "Authorization" in request.headers:
        headers["Authorization"] = request.headers["Authorization"]
    url = URL(owner.url.rstrip("/") + request.raw_path, encoded=True)
    timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S)
    try:
        async with app.http_client.get(
            url, headers=headers, timeout=timeout, allow_redirects=False
        ) as response:
            body = await response.read()
            passed = {
                name: response.headers[name] for name in _PASSED_ON if name in response.headers
            }
            return aiohttp_web.Response(
                body=body,
                status=response.status,
                content_type=response.content_type,
                headers=passed,
            )
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        reason = str(exc) or type(exc).__name__  # a timeout has no message
        return where_to_ask(app, owner, user, f"it did not answer ({reason})")


def where_to_ask(app: EngineApp, owner: Owner, user: str, reason: str) -> aiohttp_web.Response:
    """503 naming the worker that owns ``user`` and its URL, for the client to ask it there."""
    if owner.url:
        error = (
            f"user {user} is on partition {owner.partition}, owned by the worker at "
            f"{owner.url}; {reason}: ask it there"
        )
    else:
        error = (
            f"user {user} is on partition {owner.partition}, which no worker owns yet "
            "(the group is rebalancing): retry in a moment"
        )
    return aiohttp_web.json_response(
        {
            "error": error,
            "owner": owner.url,
            "partition": owner.partition,
            "worker": str(app.conf.canonical_url),
        },
        status=503,
        headers={"Retry-After": "1"},
    )


def advertised_host(bind: str) -> str:
    """The host other workers reach this one at, given the interface it binds (RECO_WEB_HOST).

    A wildcard bind (0.0.0.0, ::) is no address to connect to: advertise the
    machine's name then, as Faust does by default. An IPv6 address goes in brackets.

    >>> advertised_host("127.0.0.1"), advertised_host("::1")
    ('127.0.0.1', '[::1]')
    """
    if bind in ("0.0.0.0", "::"):
        return socket.gethostname()
    return f"[{bind}]" if ":" in bind else bind
