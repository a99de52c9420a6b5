"""``/health/live``, ``/health/ready`` and ``/metrics``."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Blueprint, Response

from realtube_push import __version__
from realtube_push.api.openapi import answers
from realtube_push.api.responses import LiveOut, MetricsText, ReadyOut
from realtube_push.domain.views import iso
from realtube_push.store import scores as score_store
from realtube_push.store import stats as stats_store
from realtube_push.web.request import services

blueprint = Blueprint("health", __name__)

CHECK_TIMEOUT_SECONDS = 2.0


@blueprint.get("/health/live")
@answers({200: LiveOut})
async def live() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


async def _timed(check: Any) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        with anyio.fail_after(CHECK_TIMEOUT_SECONDS):
            await check()
    except Exception as exc:
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "up", "latency_ms": round((time.perf_counter() - start) * 1000, 2)}


# What a Redis outage costs while this instance keeps serving from PostgreSQL.
REDIS_DOWN_IMPACT = (
    "Redis unreachable: votes, lookups and live delivery are served from PostgreSQL;"
    " caches and rate limits are bypassed and live deltas arrive by polling the sync log"
    " (up to twice LIVE_TAIL_CHECK_SECONDS late)"
)


@blueprint.get("/health/ready")
@answers({200: ReadyOut, 503: ReadyOut})
async def ready() -> tuple[dict[str, Any], int]:
    """Whether this instance can serve: 200 healthy or degraded, 503 unhealthy or draining.

    ``degraded``: Redis is down and the instance serves from PostgreSQL (the redis check says
    what is lost); ``unhealthy``: PostgreSQL is down; ``draining``: it is shutting down."""
    svc = services()
    database = await _timed(lambda: stats_store.ping(svc.pool))
    redis = await _timed(svc.redis.ping)
    if redis["status"] != "up":
        redis["impact"] = REDIS_DOWN_IMPACT
    checks: dict[str, Any] = {"database": database, "redis": redis}
    if svc.settings.run_workers:
        last = svc.status.last_runs.get("score_worker")
        checks["score_worker"] = {
            "status": "running" if last is not None else "starting",
            "last_run": iso(datetime.fromtimestamp(last, UTC)) if last else None,
        }
    else:
        checks["score_worker"] = {"status": "external"}
    for name, section in svc.status.sections.items():
        checks[name] = section()
    if svc.status.draining:
        status = "draining"
    elif database["status"] != "up":
        status = "unhealthy"
    elif redis["status"] != "up":
        status = "degraded"
    else:
        status = "healthy"
    body = {
        "status": status,
        "checks": checks,
        "uptime_seconds": round(time.time() - svc.status.started, 1),
        "version": __version__,
        "instance": svc.settings.instance_id,
    }
    return body, 200 if status in ("healthy", "degraded") else 503


@blueprint.get("/metrics")
@answers({200: MetricsText})
async def metrics() -> Response:
    """Prometheus text format."""
    svc = services()
    m = svc.metrics
    m.db_pool.labels("in_use").set(svc.pool.get_size() - svc.pool.get_idle_size())
    m.db_pool.labels("idle").set(svc.pool.get_idle_size())
    m.db_pool.labels("max").set(svc.pool.get_max_size())
    redis = await _timed(svc.redis.ping)
    m.dependency_up.labels("redis").set(1 if redis["status"] == "up" else 0)
    try:
        with anyio.fail_after(CHECK_TIMEOUT_SECONDS):
            m.score_queue_depth.set(await score_store.queue_length(svc.pool))
            m.score_lag.set(await score_store.oldest_queued_age(svc.pool))
        m.dependency_up.labels("database").set(1)
    except Exception:  # a scrape must still answer when the database does not
        m.dependency_up.labels("database").set(0)
    return Response(generate_latest(m.registry), content_type=CONTENT_TYPE_LATEST)
