"""What WebSocket and SSE share at the door: the Origin check and admission (shedding, the
per-address cap), session creation."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator

from quart import Response

from realtube_push.observability import Metrics
from realtube_push.push.admission import Refusal
from realtube_push.push.context import LiveServices
from realtube_push.push.frames import Frame
from realtube_push.push.protocol import Codec, Subscription
from realtube_push.push.session import Session, SessionLimits
from realtube_push.push.sinks import Sink
from realtube_push.web.errors import ApiError
from realtube_push.web.origin import origin_allowed


async def refuse(svc: LiveServices, origin: str | None, client_ip: str) -> ApiError | None:
    """The HTTP refusal for a connection that may not open, or None.

    None means admitted: the caller now holds one of the address's connection slots and
    must ``svc.admission.release(client_ip)`` when the connection ends.
    """
    if not origin_allowed(origin, svc.settings.cors_origins):
        return ApiError(403, "UNAUTHORIZED", "Origin not allowed")
    return await take_slot(svc, client_ip)


async def take_slot(svc: LiveServices, client_ip: str, *, shed: bool = True) -> ApiError | None:
    """Admit a connection (``push/admission``), or the refusal: 503 while the instance shuts
    down, 503 ``OVERLOADED`` while it sheds load (unless ``shed`` is False), 429 past the
    address's cap."""
    if not svc.hub.accepting:
        return ApiError(503, "INTERNAL_ERROR", "Instance is shutting down")
    refusal = await svc.admission.admit(client_ip, shed=shed)
    if refusal is None:
        return None
    if refusal.reason == "address":
        return ApiError(
            429,
            "RATE_LIMITED",
            "Too many live connections from this address",
            retry_after=30,
            headers={"Retry-After": "30"},
        )
    return Overloaded(refusal)


class Overloaded(ApiError):
    """503 ``OVERLOADED``: the process sheds load; try again after the client's own wait
    (``retry_after_ms``, and ``Retry-After`` in whole seconds)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(
            503,
            "OVERLOADED",
            f"Too many new live connections; try again in {refusal.retry_after} s",
            retry_after=refusal.retry_after,
            headers={"Retry-After": str(refusal.retry_after)},
        )
        self.retry_after_ms = refusal.retry_after_ms


def new_session(
    svc: LiveServices,
    *,
    transport: str,
    codec: Codec,
    subscription: Subscription,
    client_ip: str,
    idle_timeout: bool = False,
    sink: Sink | None = None,
) -> Session:
    """A session with this process's limits (``idle_timeout``: the client must send
    something every ``LIVE_IDLE_TIMEOUT_SECONDS``; ``sink``: where its output goes, a writer
    task's by default)."""
    s = svc.settings
    return Session(
        transport=transport,
        codec=codec,
        subscription=subscription,
        client_ip=client_ip,
        sink=sink,
        limits=SessionLimits(
            max_queued_frames=s.live_max_queued_frames,
            max_pending_deltas=s.live_max_pending_deltas,
            heartbeat_seconds=s.live_heartbeat_seconds,
            empty_flush_seconds=s.live_empty_flush_seconds,
            send_timeout_seconds=s.live_send_timeout_seconds,
            idle_seconds=s.live_idle_timeout_seconds if idle_timeout else None,
        ),
    )


def record_sent(svc: LiveServices, frame: Frame) -> None:
    """Metrics for one live frame written to a client by a writer task (pull mode)."""
    count_written(svc.metrics, frame.size)
    svc.metrics.live_fanout_lag.observe(max(time.time() - frame.published_at, 0.0))


def count_written(metrics: Metrics, size: int) -> None:
    """Count one deltas frame of ``size`` deltas written to a client."""
    if size:
        metrics.live_delivered.inc(size)
    metrics.live_frames.inc()


def record_end(svc: LiveServices, session: Session) -> None:
    """Metrics when a session ends."""
    svc.hub.unregister(session)
    if session.conflated:
        svc.metrics.live_conflated.inc(session.conflated)
    if session.resync_reason == "slow":
        svc.metrics.live_resyncs.labels("slow").inc()


async def event_stream(stream: AsyncGenerator[bytes, None]) -> Response:
    """An SSE response for a stream that owns a connection slot.

    The stream is started here, before the response exists: from its first step on, its
    ``finally`` gives the slot back, even if Quart never iterates the body (a started
    generator is closed when dropped; an unstarted one would just vanish, slot and all).
    """
    first = await anext(stream)
    response = Response(
        _continue(first, stream),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.timeout = None  # a live stream has no end; heartbeats keep proxies awake
    return response


async def _continue(first: bytes, stream: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    """The started stream as a response body: its first chunk, then the rest."""
    try:
        yield first
        async for chunk in stream:
            yield chunk
    finally:
        await stream.aclose()
