"""``/api/live/sse``: the live channel as Server-Sent Events (JSON ``data:``, ``id:`` = seq),
and the SSE output loop the admin stream shares (``events``)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

import anyio
from quart import Blueprint, Response, request

from realtube_push.push import protocol, resume
from realtube_push.push.context import LiveServices, live_services
from realtube_push.push.protocol import Codec, Hello, ProtocolError, Subscription
from realtube_push.push.session import Outgoing, Session
from realtube_push.push.sinks import PullSink
from realtube_push.push.transport import (
    event_stream,
    new_session,
    record_end,
    record_sent,
    refuse,
)
from realtube_push.web.errors import ApiError
from realtube_push.web.request import client_ip

# a stream's own event every so many seconds (the admin's ``stats``): None when there is none
Periodic = tuple[float, Callable[[], Awaitable[bytes | None]]]

blueprint = Blueprint("live_sse", __name__)

RETRY_MS = 2000


def _hello() -> Hello:
    """The cursor and subscription from the query string and ``Last-Event-ID``."""
    args = request.args
    raw_seq = request.headers.get("Last-Event-ID") or args.get("seq")
    epoch = args.get("epoch") or None
    seq: int | None = None
    if raw_seq is not None:
        if not raw_seq.isascii() or not raw_seq.isdigit() or len(raw_seq) > 18:
            raise ApiError(
                400, "INVALID_PARAM", "seq / Last-Event-ID must be a non-negative integer"
            )
        seq = int(raw_seq)
    if (seq is None) != (epoch is None):
        raise ApiError(400, "INVALID_PARAM", "send both epoch and seq, or neither")
    channels_arg = args.get("channels", "1")
    if channels_arg not in ("0", "1", "true", "false"):
        raise ApiError(400, "INVALID_PARAM", "channels must be 0/1/true/false")
    buckets_arg = args.get("buckets")
    try:
        buckets = protocol.parse_buckets(
            None if buckets_arg is None else [b for b in buckets_arg.split(",")]
        )
    except ProtocolError as exc:
        raise ApiError(400, "INVALID_PARAM", exc.message) from exc
    if epoch is not None and len(epoch) > 64:
        raise ApiError(400, "INVALID_PARAM", "epoch is too long")
    return Hello(epoch, seq, Subscription(buckets, channels_arg in ("1", "true")))


@blueprint.get("/api/live/sse")
async def live_sse() -> Response:
    """Open an event stream resuming from the client's cursor."""
    svc = live_services()
    ip = client_ip()
    hello = _hello()
    refusal = await refuse(svc, request.headers.get("Origin"), ip)
    if refusal is not None:
        raise refusal
    writer = PullSink()
    session = new_session(
        svc,
        transport="sse",
        codec=Codec.SSE,
        subscription=hello.subscription,
        client_ip=ip,
        sink=writer,
    )
    return await event_stream(events(svc, session, writer, hello))


async def events(
    svc: LiveServices,
    session: Session,
    writer: PullSink,
    hello: Hello,
    *,
    periodic: Periodic | None = None,
) -> AsyncGenerator[bytes, None]:
    """``retry``, the welcome and the replay, then the session's frames up to its final
    notice, as SSE bytes; with ``periodic`` (seconds, producer) also the producer's event
    every so many seconds, the first at once. Ends the session and gives back its
    connection slot when done.

    Yields happen outside any cancel scope (a scope must not span a generator's yield).
    """
    try:
        # registering inside the stream (started by the handler) ties the session's life to it
        start = await resume.begin(svc, session, hello)
        yield f"retry: {RETRY_MS}\n\n".encode()
        if start.welcome is not None:
            yield protocol.sse_event(start.welcome)
            async for data in resume.replay(svc, session, start):
                # an SSE session's data is always bytes (Codec.SSE); replay and Session type
                # it for both codecs
                yield data  # type: ignore[misc]
        due = anyio.current_time()
        while True:
            out: Outgoing | None = None
            if periodic is None:
                # no timer on the common path: a cancel scope per wait costs CPU per frame
                out = await writer.next_outgoing(session)
            else:
                interval, produce = periodic
                if anyio.current_time() >= due:
                    due = anyio.current_time() + interval
                    extra = await produce()
                    if extra is not None:
                        yield extra
                with anyio.move_on_after(max(0.0, due - anyio.current_time())):
                    out = await writer.next_outgoing(session)
                if out is None:
                    continue  # the producer is due
            yield out.data  # type: ignore[misc]  # bytes, as above
            if out.frame is not None:
                record_sent(svc, out.frame)
            if out.close_code is not None:
                return
    finally:
        record_end(svc, session)
        svc.admission.release(session.client_ip)
