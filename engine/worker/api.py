"""The live API on Faust's own web server: GET /recommend/{user}?n=10 and GET /health.

Handlers run on the worker's event loop, between events, and never await
while they read the model: a ranking sees one consistent model and blocks
event processing only for its own duration (O(n_items); see /health's
``rank_ms_mean``). Every error is a JSON object ``{"error": ...}`` with a 4xx
status, including unknown paths and methods; under a flood of requests the
API keeps to its share of the loop (engine.worker.admission) and answers 503 to
what it cannot take in time, so events keep flowing.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

from aiohttp import web as aiohttp_web
from faust import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine.sources.events import MAX_ID_LENGTH, InvalidEvent, check_id
from engine.worker.admission import LoopShare
from engine.worker.app import EngineApp
from engine.worker.live import LiveRecommendations
from engine.worker.metrics import WorkerMetrics
from engine.worker.routing import FORWARDED_HEADER, forward, is_forwarded, owner_of, where_to_ask
from storage import MAX_N

log = logging.getLogger(__name__)

DEFAULT_N = 10  # MAX_N (100) is the store's, so the dashboard and the API agree
# aiohttp's own work per request (parsing it, writing the answer) happens
# outside the handler's timing; about this much here, seconds.
REQUEST_OVERHEAD_S = 0.00015
_TRUE = ("1", "true", "yes")


class BadRequest(ValueError):
    """The request cannot be answered as asked; the message says what to change."""


class RecommendView(web.View):
    """Top-N from the live model; ``preview=1`` looks without counting an impression.

    A user of another worker's partition is that worker's to answer: the
    request goes there (engine.worker.routing), and ``worker`` in the answer
    is the URL of the worker that answered.
    """

    async def get(self, request: web.Request, user: str) -> web.Response:
        app = self.app
        try:
            user = parse_user(user)
            n = parse_n(request.query.get("n"))
        except BadRequest as exc:
            return self.error(400, str(exc))
        owner = owner_of(app, user)
        if owner is not None and not owner.is_self:
            if is_forwarded(request):
                sender = request.headers[FORWARDED_HEADER][:200]
                reason = f"{sender} forwarded this request here, and it goes one hop at most"
                return where_to_ask(app, owner, user, reason)
            if owner.url is None:
                return where_to_ask(app, owner, user, "")
            return await forward(app, request, owner, user)
        runtime = app.runtime
        if runtime is None:
            return self.error(503, "the engine is starting; try again in a moment")
        preview = request.query.get("preview", "").lower() in _TRUE
        answer = as_json(runtime.live.recommend(user, n, preview))
        return self.json({**answer, "worker": str(app.conf.canonical_url)})


class HealthView(web.View):
    """Readiness: 200 while the worker consumes and checkpoints, else 503 with the reasons."""

    async def get(self, request: web.Request) -> web.Response:
        runtime = self.app.runtime
        if runtime is None:
            return self.json(
                {"ok": False, "reasons": ["the engine is starting"], "error": "starting"},
                status=503,
            )
        health = runtime.health(self.app.owned_partitions())
        return self.json(
            {**health, **self.app.handler_stats.as_dict(), "event_loop": event_loop_name()},
            status=200 if health["ok"] else 503,
        )


class LivenessView(web.View):
    """Liveness: the process is up and its event loop answers (200), whatever else holds."""

    async def get(self, request: web.Request) -> web.Response:
        return self.json({"live": True})


class MetricsView(web.View):
    """The worker's figures in the Prometheus text format (engine.worker.metrics)."""

    async def get(self, request: web.Request) -> web.Response:
        headers = {"Content-Type": CONTENT_TYPE_LATEST}
        body = generate_latest(self.app.worker_metrics.registry)
        return aiohttp_web.Response(body=body, headers=headers)


def event_loop_name() -> str:
    """The running event loop's implementation: "uvloop" or "asyncio" (RECO_EVENT_LOOP)."""
    return type(asyncio.get_running_loop()).__module__.partition(".")[0]


def parse_user(raw: str) -> str:
    """The user id as the event contract has it; BadRequest for ids no event could carry."""
    try:
        return check_id(raw, "user")
    except InvalidEvent as exc:
        raise BadRequest(f"{exc}; a user id is 1 to {MAX_ID_LENGTH} printable characters") from None


def parse_n(raw: str | None) -> int:
    """The list length from ``?n=`` (default 10); BadRequest unless 1 <= n <= 100."""
    if raw is None:
        return DEFAULT_N
    try:
        n = int(raw)
    except ValueError:
        raise BadRequest(f"n must be a whole number from 1 to {MAX_N}, not {raw[:20]!r}") from None
    if not 1 <= n <= MAX_N:
        raise BadRequest(f"n must be from 1 to {MAX_N}, not {n}")
    return n


def as_json(result: LiveRecommendations) -> dict:
    return {
        "user": result.user,
        "items": [
            {"rank": item.rank, "item": item.item, "name": item.name, "score": item.score}
            for item in result.items
        ],
        "model": result.model,
        "fallback": result.fallback,
        "variant": result.variant,
    }


class HandlerStats:
    """Time the API's handlers held the event loop, since the worker started.

    Wall time (what a request waited for its handler) and the thread's CPU
    time (what the handler took from event processing), in seconds.
    """

    def __init__(self, loop_share: LoopShare) -> None:
        self.loop_share = loop_share  # the admission control the requests went through
        self.handled = 0
        self.total_s = 0.0
        self.cpu_s = 0.0

    def add(self, seconds: float, cpu_seconds: float) -> None:
        self.handled += 1
        self.total_s += seconds
        self.cpu_s += cpu_seconds

    def as_dict(self) -> dict:
        n = self.handled
        return {
            "handler_ms_mean": round(1000 * self.total_s / n, 4) if n else None,
            "handler_cpu_ms_mean": round(1000 * self.cpu_s / n, 4) if n else None,
            "waited": self.loop_share.waited,
            "refused": self.loop_share.refused,
        }


# Paths anyone who reaches the port may read, so that orchestrators and
# Prometheus need no secret; they tell nothing about any user.
OPEN_PATHS = frozenset({"/health", "/health/live", "/metrics"})


def authorized(request: aiohttp_web.Request, token: str) -> bool:
    """True when no token is set or the request carries it as ``Authorization: Bearer``."""
    if not token or request.path in OPEN_PATHS:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Compared in constant time, so the answer's timing tells nothing of the token.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())


def guard(app: EngineApp):
    """The middleware that admits ``app``'s requests and answers every error in JSON.

    Without the bearer token (RECO_API_TOKEN, when set) a request gets 401 and
    counts for nothing. Other requests are admitted within the API's share of
    the loop (engine.worker.admission); the open paths always are, so the
    worker can be watched under load. aiohttp's own errors (unknown path,
    wrong method) become ``{"error": ...}`` too.
    """
    token, stats, metrics = app.settings.api_token, app.handler_stats, app.worker_metrics
    loop_share = stats.loop_share

    @aiohttp_web.middleware
    async def admit(request: aiohttp_web.Request, handler) -> aiohttp_web.StreamResponse:
        if not authorized(request, token):
            return aiohttp_web.json_response(
                {"error": "unauthorized: send the API token as 'Authorization: Bearer TOKEN'"},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if request.path not in OPEN_PATHS and not await loop_share.admit():
            return aiohttp_web.json_response(
                {"error": "busy: more requests than the API's share of the worker; retry"},
                status=503,
                headers={"Retry-After": "1"},
            )
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            return await handler(request)
        except aiohttp_web.HTTPException as exc:
            if exc.status < 400:
                raise
            return aiohttp_web.json_response({"error": exc.reason.lower()}, status=exc.status)
        except Exception:
            log.exception("the API failed on %s %s", request.method, request.path)
            return aiohttp_web.json_response(
                {"error": "internal error; see the engine's log"}, status=500
            )
        finally:
            cpu = time.thread_time() - cpu_started
            seconds = time.perf_counter() - started
            stats.add(seconds, cpu)
            metrics.request_seconds.observe(seconds)
            # CPU time, not wall time: a handler the OS paused took nothing from the
            # events, and charging the pause would make the next requests wait for it.
            loop_share.spend(cpu + REQUEST_OVERHEAD_S)

    return admit


def register_api(app: EngineApp) -> None:
    """Serve the live API on ``app``'s web server: its views, admission, access and metrics."""
    app.handler_stats = stats = HandlerStats(LoopShare(app.settings.api_max_share))
    app.worker_metrics = metrics = WorkerMetrics(
        runtime=lambda: app.runtime,
        partitions=app.owned_partitions,
        lag=lambda: app.owned_lag() or {},
        api=lambda: {"handled": stats.handled, "refused": stats.loop_share.refused},
    )
    app.page("/recommend/{user}")(RecommendView)
    app.page("/health")(HealthView)
    app.page("/health/live")(LivenessView)
    app.page("/metrics")(MetricsView)

    @app.task
    async def observe_checkpoints() -> None:
        """Time every checkpoint into /metrics' histogram, once the runtime exists."""
        app.runtime.checkpoint_listeners.append(metrics.observe_checkpoint)

    # The aiohttp application exists from the first touch of app.web and takes
    # middlewares until the server starts.
    app.web.web_app.middlewares.append(guard(app))
