"""This instance's counters, published for the admin live topic of every instance.

Every instance writes a snapshot of its own counters to Redis once a second
(``publish_stats``, a background task of ``app.run``), under ``admin:stats:{instance}`` with a
5 s TTL, and notes the time in the ``admin:instances`` sorted set. An admin stream, on any
instance, reads every fresh snapshot (``read_snapshots``) and sends their aggregate
(``push/aggregate.py``), so the dashboard sees the whole deployment whichever instance it is
connected to. An instance that dies drops out within 5 s (its key expires, its set entry goes
stale).

Counters are cumulative (since each instance started); the dashboard turns successive
snapshots into rates (votes/min, deltas/s). The fan-out lag is sent as histogram buckets:
percentiles of separate instances cannot be merged, bucket counts can.
"""

from __future__ import annotations

import time
from typing import Any, Final

import anyio
import orjson
import structlog
from prometheus_client import Counter, Histogram
from redis.exceptions import RedisError

from realtube_push.push.aggregate import TRANSPORTS
from realtube_push.push.context import LiveServices
from realtube_push.store import admin as admin_store

log = structlog.get_logger("realtube.admin_live")

INTERVAL_SECONDS: Final = 1.0
SNAPSHOT_TTL_SECONDS: Final = 5


def _total(metric: Counter, **labels: str) -> float:
    """Sum of a counter's ``_total`` samples (optionally those with ``labels``)."""
    total = 0.0
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                total += sample.value
    return total


def _buckets(metric: Histogram) -> list[tuple[str, float]]:
    """Cumulative ``(upper bound, count)`` pairs of a histogram, ``"+Inf"`` last.

    Bounds stay Prometheus' strings: JSON has no infinity.
    """
    pairs = []
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                pairs.append((sample.labels["le"], sample.value))
    return sorted(pairs, key=lambda pair: float(pair[0]))


async def snapshot(svc: LiveServices, now: float) -> dict[str, Any]:
    """This instance's counters right now."""
    m = svc.metrics
    pool = svc.pool
    by_transport = svc.hub.connections_by_transport()
    try:
        with anyio.fail_after(INTERVAL_SECONDS):
            depth, lag = await admin_store.score_worker_lag(pool)
    except Exception:  # the database is slow or down: say so rather than stall the loop
        depth, lag = None, None
    return {
        "instance": svc.settings.instance_id,
        "at": now,
        "uptime": round(now - svc.status.started, 1),
        "connections": {t: by_transport.get(t, 0) for t in TRANSPORTS},
        "deltasPublished": _total(m.live_published),
        "deltasDelivered": _total(m.live_delivered),
        "votes": _total(m.votes),
        "cacheHits": _total(m.cache, result="hit"),
        "cacheMisses": _total(m.cache, result="miss"),
        "fanoutLagBuckets": _buckets(m.live_fanout_lag),
        "dbPool": {
            "inUse": pool.get_size() - pool.get_idle_size(),
            "size": pool.get_size(),
            "max": pool.get_max_size(),
        },
        "scoreQueue": {"depth": depth, "lagSeconds": lag},
    }


async def publish_stats(svc: LiveServices) -> None:
    """Write this instance's snapshot to Redis every second, until cancelled."""
    keys = svc.keys
    instance = svc.settings.instance_id
    while True:
        started = anyio.current_time()
        try:
            now = time.time()
            body = orjson.dumps(await snapshot(svc, now))
            async with svc.redis.pipeline(transaction=False) as pipe:
                pipe.set(keys.admin_stats(instance), body, ex=SNAPSHOT_TTL_SECONDS)
                pipe.zadd(keys.admin_instances, {instance: now})
                pipe.zremrangebyscore(keys.admin_instances, "-inf", now - 60)
                await pipe.execute()
        except RedisError as exc:  # Redis away: the dashboard shows stale data, the service goes on
            svc.redis_outage.failed("admin_stats", exc)
        except Exception:
            log.warning("admin_stats_publish_failed", exc_info=True)
        else:
            svc.redis_outage.succeeded()
        await anyio.sleep(max(0.0, INTERVAL_SECONDS - (anyio.current_time() - started)))


async def read_snapshots(svc: LiveServices) -> list[dict[str, Any]]:
    """Every instance's fresh snapshot (at most ``SNAPSHOT_TTL_SECONDS`` old)."""
    keys = svc.keys
    now = time.time()
    members = await svc.redis.zrangebyscore(
        keys.admin_instances, now - SNAPSHOT_TTL_SECONDS, "+inf"
    )
    if not members:
        return []
    instances = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
    raws = await svc.redis.mget([keys.admin_stats(i) for i in instances])
    return [orjson.loads(raw) for raw in raws if raw is not None]
