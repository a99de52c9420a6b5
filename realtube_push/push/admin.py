"""The admin live topic: ``GET /api/live/admin`` (SSE) and the counters behind it.

Every instance writes a snapshot of its own counters to Redis once a second
(``publish_stats``, a background task of ``app.run``), under ``admin:stats:{instance}`` with a
5 s TTL, and notes the time in the ``admin:instances`` sorted set. An admin stream, on any
instance, reads every fresh snapshot once a second and sends their aggregate as a ``stats``
event, so the dashboard sees the whole deployment whichever instance it is connected to. An
instance that dies drops out within 5 s (its key expires, its set entry goes stale).

Counters are cumulative (since each instance started); the dashboard turns successive
snapshots into rates (votes/min, deltas/s). Fan-out lag percentiles are computed here from
the summed histogram buckets over the last ``LAG_WINDOW_SECONDS``, because percentiles of
separate instances cannot be merged but bucket counts can.

The stream also carries the live score changes: the admin's connection is an ordinary hub
session subscribed to everything (transport ``admin``), whose ``deltas`` frames are sent as
they are, as ``deltas`` events. Requires the admin session cookie (401 otherwise).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncGenerator, Iterable
from typing import Any, Final

import anyio
import orjson
import structlog
from prometheus_client import Counter, Histogram
from quart import Blueprint, Response, request
from redis.exceptions import RedisError

from realtube_push.push import protocol, resume
from realtube_push.push.context import LiveServices, live_services
from realtube_push.push.protocol import Codec, Hello, Subscription
from realtube_push.push.session import Session
from realtube_push.push.transport import (
    event_stream,
    new_session,
    record_end,
    record_sent,
    take_slot,
)
from realtube_push.store import admin as admin_store
from realtube_push.web.admin_session import COOKIE, require_admin
from realtube_push.web.errors import ApiError
from realtube_push.web.origin import same_origin
from realtube_push.web.request import client_ip

blueprint = Blueprint("live_admin", __name__)
log = structlog.get_logger("realtube.admin_live")

INTERVAL_SECONDS: Final = 1.0
SNAPSHOT_TTL_SECONDS: Final = 5
LAG_WINDOW_SECONDS: Final = 10.0
RETRY_MS: Final = 2000
TRANSPORTS: Final = ("ws", "sse", "admin")


# -- one instance's snapshot ----------------------------------------------------------------


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


# -- the aggregate --------------------------------------------------------------------------


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus-style quantile (linear within a bucket) of cumulative bucket counts."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _merge(bucket_lists: Iterable[list[Any]]) -> dict[float, float]:
    """Bucket counts of several instances summed per bound (``"+Inf"`` -> ``inf``)."""
    merged: dict[float, float] = {}
    for pairs in bucket_lists:
        for bound, count in pairs:
            key = float(bound)
            merged[key] = merged.get(key, 0.0) + count
    return merged


class Aggregator:
    """Sums instance snapshots; keeps a short history of lag buckets for windowed percentiles."""

    def __init__(self, window: float = LAG_WINDOW_SECONDS) -> None:
        self.window = window
        self._history: deque[tuple[float, dict[float, float]]] = deque()

    def aggregate(self, snapshots: list[dict[str, Any]], now: float) -> dict[str, Any]:
        """The ``stats`` event body for these snapshots."""
        connections = {t: 0 for t in TRANSPORTS}
        for snap in snapshots:
            for transport, count in snap["connections"].items():
                connections[transport] = connections.get(transport, 0) + count
        lag_buckets = _merge(s["fanoutLagBuckets"] for s in snapshots)
        p50, p99, samples = self._lag(lag_buckets, now)
        depths = [
            s["scoreQueue"]["depth"] for s in snapshots if s["scoreQueue"]["depth"] is not None
        ]
        lags = [
            s["scoreQueue"]["lagSeconds"]
            for s in snapshots
            if s["scoreQueue"]["lagSeconds"] is not None
        ]
        return {
            "t": "stats",
            "at": now,
            "instances": [
                {
                    "instance": s["instance"],
                    "uptime": s["uptime"],
                    "connections": s["connections"],
                    "dbPool": s["dbPool"],
                    "votes": s["votes"],
                    "deltasDelivered": s["deltasDelivered"],
                }
                for s in snapshots
            ],
            "connections": {**connections, "total": sum(connections.values())},
            # every instance receives every delta: the log's count is the largest one
            "deltasPublished": max((s["deltasPublished"] for s in snapshots), default=0),
            "deltasDelivered": sum(s["deltasDelivered"] for s in snapshots),
            "votes": sum(s["votes"] for s in snapshots),
            "cacheHits": sum(s["cacheHits"] for s in snapshots),
            "cacheMisses": sum(s["cacheMisses"] for s in snapshots),
            "fanoutLag": {
                "p50Ms": None if p50 is None else round(p50 * 1000, 1),
                "p99Ms": None if p99 is None else round(p99 * 1000, 1),
                "samples": samples,
                "windowSeconds": self.window,
            },
            "dbPool": {
                key: sum(s["dbPool"][key] for s in snapshots) for key in ("inUse", "size", "max")
            },
            "scoreWorker": {
                "queueDepth": max(depths, default=None),
                "lagSeconds": None if not lags else round(max(lags), 3),
            },
        }

    def _lag(
        self, merged: dict[float, float], now: float
    ) -> tuple[float | None, float | None, int]:
        """p50, p99 and sample count of the fan-out lag over the window."""
        history = self._history
        if history and any(merged.get(b, 0.0) < c for b, c in history[-1][1].items()):
            history.clear()  # an instance left or restarted: its counts vanished
        history.append((now, merged))
        while len(history) > 1 and history[1][0] <= now - self.window:
            history.popleft()
        base = history[0][1] if len(history) > 1 else {}
        window = sorted((b, c - base.get(b, 0.0)) for b, c in merged.items())
        samples = int(window[-1][1]) if window else 0
        return histogram_quantile(0.5, window), histogram_quantile(0.99, window), samples


# -- the stream -----------------------------------------------------------------------------


def _stats_event(body: dict[str, Any]) -> bytes:
    return b"event: stats\ndata: " + orjson.dumps(body) + b"\n\n"


@blueprint.get("/api/live/admin")
async def live_admin() -> Response:
    """Stream ``stats`` (every second) and ``deltas`` (as they happen) to a logged-in admin."""
    svc = live_services()
    await require_admin(svc, request.cookies.get(COOKIE))
    if not same_origin(request.headers.get("Origin"), request.host):
        raise ApiError(403, "UNAUTHORIZED", "Cross-origin admin streams are refused")
    ip = client_ip()
    refusal = take_slot(svc, ip)
    if refusal is not None:
        raise refusal
    session = new_session(
        svc,
        transport="admin",
        codec=Codec.SSE,
        subscription=Subscription(),
        client_ip=ip,
        slot_reserved=True,
    )
    return await event_stream(_stream(svc, session))


@blueprint.get("/api/admin/stats")
async def stats() -> dict[str, Any]:
    """One aggregate, as the live topic sends it every second (for scripts and checks)."""
    svc = live_services()
    await require_admin(svc, request.cookies.get(COOKIE))
    return Aggregator().aggregate(await read_snapshots(svc), time.time())


async def _stream(svc: LiveServices, session: Session) -> AsyncGenerator[bytes, None]:
    """``welcome``, then ``stats`` every second interleaved with the session's frames.

    Yields happen outside any cancel scope (a scope must not span a generator's yield).
    """
    aggregator = Aggregator()
    try:
        start = await resume.begin(svc, session, Hello(None, None, Subscription()))
        yield f"retry: {RETRY_MS}\n\n".encode()
        if start.welcome is not None:
            yield protocol.sse_event(start.welcome)
        next_stats = anyio.current_time()
        while True:
            if anyio.current_time() >= next_stats:
                next_stats = anyio.current_time() + INTERVAL_SECONDS
                try:
                    body = aggregator.aggregate(await read_snapshots(svc), time.time())
                except Exception:
                    log.warning("admin_stats_read_failed", exc_info=True)
                else:
                    yield _stats_event(body)
            out = None
            with anyio.move_on_after(max(0.0, next_stats - anyio.current_time())):
                out = await session.next_outgoing()
            if out is None:
                continue
            # an SSE session's data is always bytes (Codec.SSE); Session types it for both codecs
            yield out.data  # type: ignore[misc]
            if out.frame is not None:
                record_sent(svc, out.frame)
            if out.close_code is not None:
                return
    finally:
        record_end(svc, session)
        svc.hub.release(session.client_ip)  # the slot take_slot() reserved
