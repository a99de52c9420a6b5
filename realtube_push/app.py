"""The application, assembled in one visible place, and its lifecycle.

``create_app`` lists every blueprint and hook (and the one route served beside Quart).
``run`` owns the process: it opens the services, composes the live channel on top of them
(the hub, and the bus subscriber that feeds it), starts every background task in one AnyIO
task group, serves HTTP (http_server.py) until SIGTERM/SIGINT, then shuts down in order: live
clients are told to reconnect elsewhere while HTTP drains (keep-alive connections closed
cleanly, then the listener, in-flight requests finished within ``SHUTDOWN_GRACE_SECONDS``),
the score queue is flushed, the background tasks are cancelled and awaited, Redis and the
pool closed.
"""

from __future__ import annotations

import logging
import secrets
import signal
import socket
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import anyio
import structlog
from hypercorn.config import Config as HypercornConfig
from quart import Quart, Response, current_app, g, request

from realtube_push import http_server
from realtube_push.api import (
    admin,
    channels,
    cors,
    docs,
    export,
    health,
    home,
    json,
    live_routes,
    openapi,
    static_files,
    stats,
    sync,
    users,
    videos,
    votes,
)
from realtube_push.config import Settings
from realtube_push.push import admin as live_admin
from realtube_push.push import snapshots, sse, ws
from realtube_push.push.admission import Admission
from realtube_push.push.bus import BusSubscriber
from realtube_push.push.context import LiveServices, live_readiness
from realtube_push.push.herd import HerdSpread
from realtube_push.push.hub import Hub
from realtube_push.push.slots import AddressSlots
from realtube_push.ratelimit import Verdict
from realtube_push.services import Services, open_services
from realtube_push.web import errors
from realtube_push.web.request import ip_hash
from realtube_push.workers import channels as channel_worker
from realtube_push.workers import fullblob, prune, score, trust
from realtube_push.workers.transient import TRANSIENT_ERRORS

log = structlog.get_logger("realtube.app")

BLUEPRINTS = (
    videos.blueprint,
    votes.blueprint,
    channels.blueprint,
    users.blueprint,
    stats.blueprint,
    sync.blueprint,
    health.blueprint,
    export.blueprint,
    sse.blueprint,
    admin.blueprint,
    live_admin.blueprint,
    static_files.blueprint,
    home.blueprint,
    docs.blueprint,
)

BACKGROUND_WORKERS: tuple[Callable[[Services], Coroutine[Any, Any, None]], ...] = (
    score.run,
    channel_worker.run,
    trust.run,
    prune.run,
    fullblob.run,
)


def create_routes() -> Quart:
    """The app's routes with their validation and OpenAPI description (no services yet)."""
    app = Quart("realtube_push", static_folder=None)  # files are served by static_files.py
    openapi.install(app)
    json.install(app)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    live_routes.describe(app)
    return app


def openapi_document() -> bytes:
    """The OpenAPI document every server serves at ``/openapi.json`` (``tools/openapi.py``
    writes it to the repository's ``openapi.json``)."""
    return openapi.render(openapi.document(create_routes()))


def create_app(svc: LiveServices) -> Quart:
    """The Quart app: routes, validation/OpenAPI, CORS, errors, request log and metrics."""
    app = create_routes()
    app.config["MAX_CONTENT_LENGTH"] = svc.settings.max_body_bytes
    app.extensions["realtube"] = svc
    errors.register(app)
    cors.install(app, svc.settings.cors_origins)
    app.before_request(_start_request)
    app.after_request(_finish_request)
    # the live WebSocket is served beside Quart, not through it (push/ws.py says why).
    # Wrapping asgi_app is Quart's documented way to put ASGI middleware in front; mypy
    # sees a method replaced, and ws.py types ASGI messages as plain mappings rather than
    # Hypercorn's TypedDicts, so neither side's signature matches the other's on paper.
    app.asgi_app = ws.LiveWebSocketRoute(  # type: ignore[method-assign, assignment]
        app.asgi_app,  # type: ignore[arg-type]
        svc,
    )
    return app


async def _start_request() -> None:
    g.started = time.perf_counter()


async def _finish_request(response: Response) -> Response:
    verdict: Verdict | None = g.get("rate_verdict")
    if verdict is not None:
        for name, value in verdict.headers().items():
            response.headers.setdefault(name, value)
    svc: Services = current_app.extensions["realtube"]
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
    svc.metrics.requests.labels(request.method, endpoint, str(response.status_code)).inc()
    svc.metrics.request_seconds.labels(endpoint).observe(elapsed)
    if endpoint not in ("/metrics", "/health/live", "/health/ready"):
        log.info(
            "request",
            method=request.method,
            path=_loggable_path(),
            status=response.status_code,
            duration_ms=round(elapsed * 1000, 2),
            ip_hash=ip_hash(),
            user_id_prefix=_user_prefix(),
            video_id=g.get("video_id"),
        )
    return response


def _user_prefix() -> str | None:
    user = g.get("user_id") or (request.view_args or {}).get("user_id")
    user = user or request.headers.get("X-User-ID")
    return user[:8] if isinstance(user, str) and user else None


def _loggable_path() -> str:
    """The path with any user id cut to its prefix: logs hold user-id prefixes only."""
    user = (request.view_args or {}).get("user_id")
    if isinstance(user, str) and len(user) > 8:
        return request.path.replace(user, user[:8] + "...")
    return request.path


async def run(
    settings: Settings,
    *,
    listener: socket.socket | None = None,
    on_ready: Callable[[Services], None] | None = None,
) -> None:
    """Run the service until SIGTERM or SIGINT, then shut down cleanly: HTTP (and the live
    channel) on ``listener`` when one is given, the background workers when ``RUN_WORKERS``."""
    async with open_services(settings) as base:
        svc = compose(base)
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_signals, stop)
            if settings.run_workers:
                for worker in BACKGROUND_WORKERS:
                    tg.start_soon(worker, svc)
            if listener is not None:
                await tg.start(svc.votes.run)
                tg.start_soon(partial(svc.hub.run, sweep_seconds=_sweep_seconds(settings)))
                tg.start_soon(svc.admission.slots.run)
                tg.start_soon(BusSubscriber(svc, svc.hub).run)
                tg.start_soon(snapshots.publish_stats, svc)
                tg.start_soon(_leave_on_stop, svc, stop)
            if on_ready is not None:
                on_ready(svc)
            if listener is not None:
                await http_server.serve(
                    create_app(svc), _hypercorn_config(settings), listener, drain_trigger=stop.wait
                )
            else:
                await stop.wait()
            log.info("shutting_down", instance=settings.instance_id)
            if settings.run_workers:
                with anyio.move_on_after(settings.shutdown_grace_seconds, shield=True):
                    try:
                        flushed = await score.drain(svc)
                        log.info("score_queue_flushed", videos=flushed)
                    except TRANSIENT_ERRORS:  # the queue is durable: a later worker drains it
                        log.warning("score_queue_flush_failed", exc_info=True)
            tg.cancel_scope.cancel()
    log.info("stopped", instance=settings.instance_id)


def compose(svc: Services) -> LiveServices:
    """The live channel on top of the services: this process's hub, reporting its section of
    /health/ready, and its admission (shedding, and per-address slots shared in Redis)."""
    settings = svc.settings
    hub = Hub(
        instance=settings.instance_id,
        metrics=svc.metrics,
        pause_factor=settings.live_fanout_pause_factor,
        max_pause_seconds=settings.live_fanout_max_pause_ms / 1000,
        reconnect_spread=HerdSpread(
            rate=settings.live_reconnect_rate,
            min_ms=settings.live_reconnect_delay_ms,
            max_ms=settings.live_reconnect_max_window_ms,
        ),
        resync_spread=HerdSpread(
            rate=settings.live_resync_rate, min_ms=0, max_ms=settings.live_resync_max_window_ms
        ),
    )
    slots = AddressSlots(
        svc.redis,
        svc.keys,
        svc.redis_outage,
        # unique per process even if several share an INSTANCE_ID
        process=f"{settings.instance_id}:{secrets.token_hex(4)}",
        salt=settings.ip_hash_salt.get_secret_value(),
        cap=settings.live_max_connections_per_ip,
        ttl_seconds=settings.live_slot_ttl_seconds,
    )
    admission = Admission(
        slots,
        rate=settings.live_accept_rate,
        burst=settings.live_accept_burst,
        max_connections=settings.live_max_connections,
        max_retry_seconds=settings.live_shed_max_retry_seconds,
        lag=hub.lag,
        max_lag_seconds=settings.live_shed_lag_ms / 1000,
        metrics=svc.metrics,
    )
    live = LiveServices.around(svc, hub, admission)
    live.status.sections["live"] = partial(live_readiness, live)
    return live


def _sweep_seconds(settings: Settings) -> float:
    """How often the hub looks at its sessions' timers: half the shortest one, 50 ms..1 s."""
    shortest = min(settings.live_heartbeat_seconds, settings.live_empty_flush_seconds)
    return max(0.05, min(1.0, shortest / 2))


async def _leave_on_stop(svc: LiveServices, stop: anyio.Event) -> None:
    """On stop, /health/ready turns to "draining" and live clients are told to reconnect
    elsewhere (WS close 1012, SSE retry hint) and given a moment to leave, while the HTTP side
    drains (http_server.py)."""
    await stop.wait()
    svc.status.draining = True
    await svc.hub.shutdown(wait_seconds=min(5.0, svc.settings.shutdown_grace_seconds))


async def _watch_signals(stop: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            stop.set()
            return


def _hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    config.backlog = 2048
    config.graceful_timeout = settings.shutdown_grace_seconds
    config.accesslog = None
    # Hypercorn's own lines go through the service's log configuration (logs.py)
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = 75
    config.websocket_ping_interval = None
    # oversized client messages are refused by the WebSocket layer itself (close 1009)
    config.websocket_max_message_size = settings.live_max_message_bytes
    return config
