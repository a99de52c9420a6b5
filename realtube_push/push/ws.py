"""``/api/live/ws``: the live channel over WebSocket (binary MessagePack or JSON text)."""

from __future__ import annotations

import time

import anyio
import structlog
from quart import Blueprint, Response, websocket
from quart_cors import cors_exempt

from realtube_push.api.context import client_ip, services
from realtube_push.push import protocol, resume
from realtube_push.push.protocol import Codec, ProtocolError
from realtube_push.push.session import Session
from realtube_push.push.transport import new_session, record_end, record_sent, refuse
from realtube_push.services import Services

blueprint = Blueprint("live_ws", __name__)
log = structlog.get_logger("realtube.ws")


@blueprint.websocket("/api/live/ws")
@cors_exempt  # Origin is checked by refuse(), which also admits clients that send none
async def live_ws() -> Response | None:
    """Accept, read the hello, resume, then stream until either side closes."""
    svc = services()
    ip = client_ip()
    refusal = refuse(svc, websocket.headers.get("Origin"), ip)
    if refusal is not None:
        return refusal
    try:
        await _serve(svc, ip)
    finally:
        svc.hub.release(ip)  # the slot refuse() took, whatever became of the connection
    return None


async def _serve(svc: Services, ip: str) -> None:
    requested = websocket.requested_subprotocols
    if protocol.JSON_SUBPROTOCOL in requested and protocol.MSGPACK_SUBPROTOCOL not in requested:
        codec, chosen = Codec.JSON, protocol.JSON_SUBPROTOCOL
    else:
        codec = Codec.MSGPACK
        chosen = protocol.MSGPACK_SUBPROTOCOL if requested else None
    await websocket.accept(subprotocol=chosen)
    settings = svc.settings
    try:
        with anyio.fail_after(settings.live_hello_timeout_seconds):
            raw = await websocket.receive()
        hello = protocol.parse_hello(
            protocol.decode_client(raw, max_bytes=settings.live_max_message_bytes)
        )
    except TimeoutError:
        await _fail(codec, ProtocolError("HELLO_REQUIRED", "no hello within the timeout"))
        return
    except ProtocolError as exc:
        await _fail(codec, exc)
        return
    session = new_session(
        svc,
        transport="ws",
        codec=codec,
        subscription=hello.subscription,
        client_ip=ip,
        slot_reserved=True,
    )
    # One cancel scope for the connection's whole life: the hub's sweeper cancels it when a
    # send stays blocked past LIVE_SEND_TIMEOUT_SECONDS (a client that stopped reading fills
    # the socket buffers). A scope per send cost a fifth of the fan-out's CPU.
    with anyio.CancelScope() as connection:
        session.on_stuck = connection.cancel
        try:
            start = await resume.begin(svc, session, hello)
            if start.welcome is not None:
                await _send(session, protocol.encode(start.welcome, codec))
                async for frame in resume.replay(svc, session, start):
                    await _send(session, frame.encoded(codec))
                    record_sent(svc, session, frame.size, None, time.time())
            async with anyio.create_task_group() as tg:
                tg.start_soon(_read, svc, session)
                await _write(svc, session)
                tg.cancel_scope.cancel()
        except LookupError:
            session.resync("retention")
            await _write(svc, session)
        finally:
            record_end(svc, session)
    if connection.cancelled_caught:
        # the client's doing, not an error: what was written stays in bounded buffers
        log.info("ws_client_stalled", waited_seconds=settings.live_send_timeout_seconds)


async def _fail(codec: Codec, exc: ProtocolError) -> None:
    await websocket.send(protocol.encode(protocol.error(exc.code, exc.message), codec))
    await websocket.close(exc.close_code)


async def _read(svc: Services, session: Session) -> None:
    settings = svc.settings
    while True:
        with anyio.move_on_after(settings.live_idle_timeout_seconds) as idle:
            raw = await websocket.receive()
        if idle.cancelled_caught:
            session.finish(
                protocol.error("IDLE", "no message from the client"), protocol.CLOSE_IDLE
            )
            return
        try:
            frame = protocol.decode_client(raw, max_bytes=settings.live_max_message_bytes)
        except ProtocolError as exc:
            session.finish(protocol.error(exc.code, exc.message), exc.close_code)
            return
        kind = frame["t"]
        if kind == "ping":
            session.send_control(protocol.pong(frame.get("id")))
        elif kind != "pong":
            session.finish(
                protocol.error("UNKNOWN_TYPE", f"unknown message type {kind!r}"),
                protocol.CLOSE_PROTOCOL,
            )
            return


async def _send(session: Session, data: bytes | str) -> None:
    """Send one message, marking it in flight for the sweeper's stuck-send check."""
    session.sending_since = time.monotonic()
    try:
        await websocket.send(data)
    finally:
        session.sending_since = None


async def _write(svc: Services, session: Session) -> None:
    while True:
        out = await session.next_outgoing()
        await _send(session, out.data)
        if out.frame is not None:
            record_sent(svc, session, out.frame.size, out.frame.published_at, time.time())
        if out.close_code is not None:
            with anyio.move_on_after(svc.settings.live_send_timeout_seconds):
                await websocket.close(out.close_code)
            return
