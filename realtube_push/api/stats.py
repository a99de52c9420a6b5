"""``GET /api/stats`` (cached briefly in Redis: it counts whole tables)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from realtube_push.api.limits import enforce_limit
from realtube_push.api.openapi import answers
from realtube_push.api.responses import StatsOut
from realtube_push.ratelimit import Limit
from realtube_push.store import stats as stats_store
from realtube_push.web.request import client_ip, services

blueprint = Blueprint("stats", __name__)

STATS_TTL_SECONDS = 10


@blueprint.get("/api/stats")
@answers({200: StatsOut}, rate_limited=True)
async def get_stats() -> tuple[dict[str, Any], int]:
    """Totals over the whole dataset."""
    svc = services()
    await enforce_limit("stats", client_ip(), Limit(svc.settings.rate_limit_stats))
    totals, hit = await svc.cache.read_through(
        svc.keys.stats(), STATS_TTL_SECONDS, lambda: stats_store.totals(svc.pool)
    )
    svc.metrics.cache.labels("hit" if hit else "miss").inc()
    return totals, 200  # type: ignore[return-value]  # never None: totals() always answers
