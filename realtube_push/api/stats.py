"""``GET /api/stats`` (cached briefly in Redis: it counts whole tables)."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Blueprint

from realtube_push.api.context import client_ip, enforce_limit, services
from realtube_push.ratelimit import Limit
from realtube_push.store import stats as stats_store

blueprint = Blueprint("stats", __name__)

STATS_TTL_SECONDS = 10


@blueprint.get("/api/stats")
async def get_stats() -> tuple[dict[str, Any], int]:
    """Totals over the whole dataset."""
    svc = services()
    await enforce_limit("stats", client_ip(), Limit(svc.settings.rate_limit_stats))
    cached = await svc.cache.get_json(svc.keys.stats())
    if cached is not None:
        return cached, 200  # type: ignore[return-value]
    totals = await stats_store.totals(svc.pool)
    await svc.redis.set(svc.keys.stats(), orjson.dumps(totals), ex=STATS_TTL_SECONDS)
    return totals, 200
