"""``GET /api/live/admin``: the admin live topic, and ``GET /api/admin/stats``.

The stream sends ``stats`` every second (the aggregate of every instance's snapshot:
``push/snapshots.py``, ``push/aggregate.py``) and the live score changes: the admin's
connection is an ordinary hub session subscribed to everything (transport ``admin``), whose
``deltas`` frames are sent as they are, as ``deltas`` events, through the SSE output loop
(``push/sse.py``). Requires the admin session cookie (401 otherwise).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from quart import Blueprint, Response, request

from realtube_push.push.aggregate import Aggregator
from realtube_push.push.context import LiveServices, live_services
from realtube_push.push.protocol import Codec, Hello, Subscription
from realtube_push.push.sinks import PullSink
from realtube_push.push.snapshots import INTERVAL_SECONDS, read_snapshots
from realtube_push.push.sse import events
from realtube_push.push.transport import event_stream, new_session, take_slot
from realtube_push.web.admin_session import COOKIE, require_admin
from realtube_push.web.errors import ApiError
from realtube_push.web.origin import same_origin
from realtube_push.web.request import client_ip

blueprint = Blueprint("live_admin", __name__)
log = structlog.get_logger("realtube.admin_live")


@blueprint.get("/api/live/admin")
async def live_admin() -> Response:
    """Stream ``stats`` (every second) and ``deltas`` (as they happen) to a logged-in admin."""
    svc = live_services()
    await require_admin(svc, request.cookies.get(COOKIE))
    if not same_origin(request.headers.get("Origin"), request.host):
        raise ApiError(403, "UNAUTHORIZED", "Cross-origin admin streams are refused")
    ip = client_ip()
    refusal = await take_slot(svc, ip, shed=False)  # the operator must see a herd being shed
    if refusal is not None:
        raise refusal
    writer = PullSink()
    session = new_session(
        svc,
        transport="admin",
        codec=Codec.SSE,
        subscription=Subscription(),
        client_ip=ip,
        sink=writer,
    )
    hello = Hello(None, None, Subscription())
    every_second = (INTERVAL_SECONDS, _stats_producer(svc))
    return await event_stream(events(svc, session, writer, hello, periodic=every_second))


@blueprint.get("/api/admin/stats")
async def stats() -> dict[str, Any]:
    """One aggregate, as the live topic sends it every second (for scripts and checks)."""
    svc = live_services()
    await require_admin(svc, request.cookies.get(COOKIE))
    return Aggregator().aggregate(await read_snapshots(svc), time.time())


def _stats_producer(svc: LiveServices) -> Callable[[], Awaitable[bytes | None]]:
    """The ``stats`` event of one admin stream (its own aggregator: the lag window is kept
    per stream); None when the snapshots cannot be read this time."""
    aggregator = Aggregator()

    async def produce() -> bytes | None:
        try:
            body = aggregator.aggregate(await read_snapshots(svc), time.time())
        except Exception:
            log.warning("admin_stats_read_failed", exc_info=True)
            return None
        return b"event: stats\ndata: " + orjson.dumps(body) + b"\n\n"

    return produce
