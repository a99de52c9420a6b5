"""``/api/live/ws``: the live channel over WebSocket (binary MessagePack or JSON text).

A bare ASGI endpoint in front of Quart (``LiveWebSocketRoute`` wraps the app's
``asgi_app``). Why not a Quart route: per connection Quart adds a handler task, a receiver
task, a message queue and a request context, which is most of what ten thousand idle
subscribers cost. Here a connection is the one task Hypercorn starts for it, reading client
messages; the hub writes frames straight to the socket (``push.direct``, a ``PushSink``).
Where the socket cannot be reached (HTTP/2 WebSockets) a writer task sends through ASGI
instead (a ``PullSink``); the protocol on the wire is the same.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any

import anyio
import orjson
import structlog

from realtube_push.push import protocol, resume
from realtube_push.push.context import LiveServices
from realtube_push.push.direct import (
    DirectSocket,
    decline_compression,
    fail_with_close_code,
    socket_for,
)
from realtube_push.push.protocol import Codec, Hello, ProtocolError
from realtube_push.push.session import Session
from realtube_push.push.sinks import PullSink, PushSink
from realtube_push.push.transport import (
    Overloaded,
    count_written,
    new_session,
    record_end,
    record_sent,
    refuse,
)
from realtube_push.web.errors import ApiError
from realtube_push.web.request import resolve_client_ip

PATH = "/api/live/ws"
# user-space bytes a connection may hold before the hub stops writing to it: a few frames,
# so a slow reader costs bounded memory and its backlog conflates in the session instead
WRITE_HIGH_WATER = 64 * 1024

log = structlog.get_logger("realtube.ws")
_modes_logged: set[str] = set()  # write modes this process has logged (``_direct_writer``)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class LiveWebSocketRoute:
    """ASGI middleware: ``/api/live/ws`` WebSockets are served here, the rest by ``app``."""

    def __init__(self, app: ASGIApp, svc: LiveServices) -> None:
        self.app = app
        self.svc = svc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == PATH:
            await serve(self.svc, scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def serve(svc: LiveServices, scope: Scope, receive: Receive, send: Send) -> None:
    """One WebSocket connection: handshake checks, hello, resume, then stream."""
    if (await receive())["type"] != "websocket.connect":
        return
    ip, origin = _peer(svc, scope)
    refusal = await refuse(svc, origin, ip)
    if refusal is not None:
        await _reject(scope, send, refusal)
        return
    try:
        await _serve(svc, scope, receive, send, ip)
    except Exception:
        # a bug or a lost dependency (the resume reads PostgreSQL/Redis): the client gets
        # 1011 and reconnects, the process goes on
        log.exception("ws_connection_failed")
        with anyio.move_on_after(1):
            await send({"type": "websocket.close", "code": protocol.CLOSE_SERVER_ERROR})
    finally:
        svc.admission.release(ip)  # the slot refuse() took, whatever became of the connection


def _peer(svc: LiveServices, scope: Scope) -> tuple[str, str | None]:
    """The client's address (proxies considered) and its ``Origin`` header.

    A function of its own so the headers are not kept alive by the connection's frame for
    its whole life (memory per connection counts, times ten thousand)."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    client = scope.get("client")
    ip = resolve_client_ip(
        client[0] if client else None,
        headers.get("x-forwarded-for", ""),
        svc.settings.proxy_networks,
    )
    return ip, headers.get("origin")


async def _reject(scope: Scope, send: Send, refusal: ApiError) -> None:
    """Refuse the handshake with an HTTP error in the contract's format. Where the server
    lacks the ASGI websocket-response extension the refusal comes after the upgrade: a
    shed client gets ``reconnect`` ("overloaded", its own wait) and 1013, others a bare
    1008."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        if isinstance(refusal, Overloaded):
            codec, chosen = _negotiate(scope)
            await send({"type": "websocket.accept", "subprotocol": chosen})
            notice = protocol.reconnect(reason="overloaded", retry_after_ms=refusal.retry_after_ms)
            await send(_message(protocol.encode(notice, codec)))
            await send({"type": "websocket.close", "code": protocol.CLOSE_TRY_LATER})
        else:
            await send({"type": "websocket.close", "code": 1008})
        return
    body = orjson.dumps(refusal.document())
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += [(k.lower().encode(), v.encode()) for k, v in refusal.headers.items()]
    await send(
        {"type": "websocket.http.response.start", "status": refusal.status, "headers": headers}
    )
    await send({"type": "websocket.http.response.body", "body": body})


def _negotiate(scope: Scope) -> tuple[Codec, str | None]:
    """The codec and the subprotocol to answer with (MessagePack unless only JSON is asked)."""
    requested = scope.get("subprotocols") or []
    if protocol.JSON_SUBPROTOCOL in requested and protocol.MSGPACK_SUBPROTOCOL not in requested:
        return Codec.JSON, protocol.JSON_SUBPROTOCOL
    return Codec.MSGPACK, protocol.MSGPACK_SUBPROTOCOL if requested else None


async def _serve(svc: LiveServices, scope: Scope, receive: Receive, send: Send, ip: str) -> None:
    codec, chosen = _negotiate(scope)
    decline_compression(send)
    await send({"type": "websocket.accept", "subprotocol": chosen})
    fail_with_close_code(send)
    settings = svc.settings
    try:
        with anyio.fail_after(settings.live_hello_timeout_seconds):
            message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        hello = protocol.parse_hello(
            protocol.decode_client(_payload(message), max_bytes=settings.live_max_message_bytes)
        )
    except TimeoutError:
        await _fail(send, codec, ProtocolError("HELLO_REQUIRED", "no hello within the timeout"))
        return
    except ProtocolError as exc:
        await _fail(send, codec, exc)
        return
    # the welcome and the replay go through ASGI, from a writer's sink
    writer = PullSink()
    session = new_session(
        svc,
        transport="ws",
        codec=codec,
        subscription=hello.subscription,
        client_ip=ip,
        idle_timeout=True,
        sink=writer,
    )
    # the connection's socket, where Hypercorn lets us reach it (not under HTTP/2): push mode
    # writes to it, and either mode drops a client that stopped reading through it (a
    # graceful close would wait behind the bytes it does not read)
    sock = socket_for(send, high_water=WRITE_HIGH_WATER)
    client_left = False
    try:
        # One scope for the connection's life (a scope per wait or send cost a fifth of the
        # fan-out's CPU). The session's sink cancels it when the session must end (its final
        # notice), and the hub's sweeper when a send stays blocked past the send timeout.
        with anyio.CancelScope() as connection:
            writer.on_stuck = connection.cancel if sock is None else sock.abort
            client_left = await _stream(
                svc, session, writer, hello, receive, send, sock, connection.cancel
            )
        if session.stalled:
            # the client's doing, not an error: what it did not read stayed bounded
            log.info("ws_client_stalled", waited_seconds=settings.live_send_timeout_seconds)
            return
        final = session.final_outgoing()
        if final is None or final.close_code is None or client_left:
            return
        if not (sock is not None and sock.congested()) and await _close(
            svc, receive, send, final.data, final.close_code
        ):
            return
        # the client does not read: the close handshake would wait behind its unread bytes
        log.info("ws_client_not_reading", close_code=final.close_code)
        if sock is not None:
            sock.abort()
    finally:
        record_end(svc, session)


async def _stream(
    svc: LiveServices,
    session: Session,
    writer: PullSink,
    hello: Hello,
    receive: Receive,
    send: Send,
    sock: DirectSocket | None,
    end: Callable[[], None],
) -> bool:
    """Welcome, replay, then live frames until the session ends (``end`` is called when
    it must, in push mode); True when the client left."""
    start = await resume.begin(svc, session, hello)
    if start.welcome is not None:
        await _send(writer, send, protocol.encode(start.welcome, session.codec))
        async for data in resume.replay(svc, session, start):
            await _send(writer, send, data)
    direct = _direct_writer(svc, sock)
    if direct is None:
        return await _pull(svc, session, writer, receive, send)
    session.attach(PushSink(direct, on_final=end, on_written=partial(count_written, svc.metrics)))
    return await _read(svc, session, receive)


def _direct_writer(svc: LiveServices, sock: DirectSocket | None) -> DirectSocket | None:
    """The socket this connection's frames go straight to, or None when they go through
    ASGI; the write mode is counted per connection
    (``realtube_live_ws_sessions_total{write_mode}``) and logged for the first connection of
    each mode in the process, so a stack that silently lost the fast path shows it."""
    if sock is not None and svc.settings.live_direct_writes:
        mode, reason = "direct", "the socket is reachable"
    elif sock is not None:
        mode, reason = "asgi", "LIVE_DIRECT_WRITES is off"
    else:
        mode, reason = (
            "asgi",
            "the socket is out of reach (HTTP/2, another server or a wrapped send)",
        )
    svc.metrics.live_ws_sessions.labels(mode).inc()
    if mode not in _modes_logged:
        _modes_logged.add(mode)
        log.info("ws_write_mode", write_mode=mode, reason=reason)
    return sock if mode == "direct" else None


async def _pull(
    svc: LiveServices, session: Session, writer: PullSink, receive: Receive, send: Send
) -> bool:
    """Pull mode: a writer task sends through ASGI while this task reads. True when the
    client left."""
    client_left = False

    async def read() -> None:
        nonlocal client_left
        client_left = await _read(svc, session, receive)
        if client_left:
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        while True:
            out = await writer.next_outgoing(session)
            if out.close_code is not None:
                break
            await _send(writer, send, out.data)
            if out.frame is not None:
                record_sent(svc, out.frame)
        tg.cancel_scope.cancel()
    return client_left


def _payload(message: Message) -> bytes | str:
    data = message.get("bytes")
    return data if data is not None else message.get("text") or ""


def _message(data: bytes | str) -> Message:
    if isinstance(data, bytes):
        return {"type": "websocket.send", "bytes": data}
    return {"type": "websocket.send", "text": data}


async def _send(writer: PullSink, send: Send, data: bytes | str) -> None:
    """Send one message through ASGI, marked in flight for the sweeper's stuck-send check."""
    writer.sending_since = time.monotonic()
    try:
        await send(_message(data))
    finally:
        writer.sending_since = None


async def _close(
    svc: LiveServices, receive: Receive, send: Send, data: bytes | str, code: int
) -> bool:
    """The final notice and the close handshake, until the client's Close answers ours;
    False when that did not happen within the send timeout (a client that does not read
    never answers, and its connection would stay open)."""
    with anyio.move_on_after(svc.settings.live_send_timeout_seconds):
        await send(_message(data))
        await send({"type": "websocket.close", "code": code})
        while (await receive())["type"] != "websocket.disconnect":
            pass  # what the client sent before it read our Close
        return True
    return False


async def _fail(send: Send, codec: Codec, exc: ProtocolError) -> None:
    await send(_message(protocol.encode(protocol.error(exc.code, exc.message), codec)))
    await send({"type": "websocket.close", "code": exc.close_code})


async def _read(svc: LiveServices, session: Session, receive: Receive) -> bool:
    """Client messages until it leaves (True) or the session must end (False): answer
    pings, accept pongs, end on anything else. (The idle timeout is the sweeper's.)"""
    max_bytes = svc.settings.live_max_message_bytes
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return True
        session.last_heard = time.monotonic()
        try:
            frame = protocol.decode_client(_payload(message), max_bytes=max_bytes)
        except ProtocolError as exc:
            session.finish(protocol.error(exc.code, exc.message), exc.close_code)
            return False
        kind = frame["t"]
        if kind == "ping":
            session.answer_ping(frame.get("id"))
        elif kind != "pong":
            session.finish(
                protocol.error("UNKNOWN_TYPE", f"unknown message type {kind!r}"),
                protocol.CLOSE_PROTOCOL,
            )
            return False
