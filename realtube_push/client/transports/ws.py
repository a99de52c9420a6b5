"""The WebSocket transport: ``GET /api/live/ws``, ``hello`` with the cursor, frames until the end.

Promises: the first message sent is ``hello`` (cursor and subscription); a ``welcome`` must
come within ``connect_timeout``, else the session is lost; after it, every ``deltas`` frame
goes to the host in order, every server ``ping`` is answered with ``pong`` and counted, the
client pings every ``ping_interval`` (default: the announced heartbeat), and a connection
silent for 2.5 heartbeats is declared dead. The session ends with the ending the server's
final frame or close code announces; a handshake refused with an HTTP status raises
``Refused`` (so a 503 with ``Retry-After`` is honoured like any shedding).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import httpx
import wsproto.events
import wsproto.utilities
from httpx_ws import (
    AsyncWebSocketSession,
    HTTPXWSException,
    WebSocketDisconnect,
    WebSocketUpgradeError,
    aconnect_ws,
)

from realtube_push.client import wire
from realtube_push.client.options import Transport
from realtube_push.client.session import Ending, Refused, SessionHost, close_ending, control_ending

Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Larger messages from the server are refused (a replay frame is far below this).
_MAX_MESSAGE_BYTES = 1 << 20
#: What a failed send raises: the connection is closing, and the reader reports how.
_SEND_FAILED = (HTTPXWSException, wsproto.utilities.LocalProtocolError)


class WebSocketTransport:
    """One WebSocket session per ``session()`` call."""

    name: Transport = "ws"

    async def session(self, host: SessionHost) -> Ending:
        """Connect, stream until the connection ends; returns how it ended."""
        options = host.options
        subprotocol = wire.JSON_SUBPROTOCOL if options.json_frames else wire.MSGPACK_SUBPROTOCOL
        try:
            async with aconnect_ws(
                host.url + wire.WS_PATH,
                host.http,
                subprotocols=[subprotocol],
                keepalive_ping_interval_seconds=None,  # the protocol's own pings do this job
                max_message_size_bytes=_MAX_MESSAGE_BYTES,
                headers=options.request_headers(),
                timeout=httpx.Timeout(options.connect_timeout),
                session_class=AsyncWebSocketSession,
            ) as ws:
                return await _stream(ws, host)
        except WebSocketUpgradeError as exc:
            raise Refused.of(exc.response) from exc


async def _stream(ws: AsyncWebSocketSession, host: SessionHost) -> Ending:
    binary = ws.subprotocol != wire.JSON_SUBPROTOCOL

    async def send(frame: dict[str, Any]) -> None:
        data = wire.encode(frame, binary=binary)
        if isinstance(data, bytes):
            await ws.send_bytes(data)
        else:
            await ws.send_text(data)

    cursor = host.cache.cursor
    assert cursor is not None  # the state machine full-syncs before any session
    hello = wire.hello(
        epoch=cursor.epoch,
        seq=cursor.seq,
        buckets=host.cache.buckets,
        channels=host.cache.with_channels,
    )
    with contextlib.suppress(*_SEND_FAILED):
        # An overloaded server may send its notice and close before any hello: read it.
        await send(hello)
    first = await _next(ws, host.options.connect_timeout, connected=False)
    if isinstance(first, Ending):
        return first
    if first["t"] != "welcome":
        return control_ending(first)
    heartbeat = await host.welcomed(first, "ws")
    async with anyio.create_task_group() as tg:
        tg.start_soon(_pinger, send, host.options.ping_interval or heartbeat)
        end = await _read(ws, send, host, heartbeat)
        tg.cancel_scope.cancel()
    return end


async def _read(
    ws: AsyncWebSocketSession, send: Send, host: SessionHost, heartbeat: float
) -> Ending:
    resuming = True  # the first frame may repeat seqs the cache holds (a replay)
    while True:
        frame = await _next(ws, 2.5 * heartbeat, connected=True)
        if isinstance(frame, Ending):
            return frame
        kind = frame["t"]
        if kind == "deltas":
            await host.apply_frame(frame, resuming=resuming, source="ws")
            resuming = False
        elif kind == "ping":
            await send(wire.pong(frame.get("id")))
            await host.heartbeat_received()
        elif kind in ("resync", "reconnect", "error"):
            return control_ending(frame)
        # pong, a repeated welcome and frame types of newer servers need nothing


async def _pinger(send: Send, interval: float) -> None:
    n = 0
    while True:
        await anyio.sleep(interval)
        n += 1
        try:
            await send(wire.ping(n))
        except _SEND_FAILED:
            return


async def _next(
    ws: AsyncWebSocketSession, within: float, *, connected: bool
) -> Mapping[str, Any] | Ending:
    """The next protocol frame; or how the connection ended: closed by the server (its close
    code decides what next) or silent for ``within`` seconds (dead)."""
    with anyio.move_on_after(within):
        try:
            while True:
                event = await ws.receive()
                if isinstance(event, wsproto.events.BytesMessage | wsproto.events.TextMessage):
                    return wire.decode(event.data)
        except WebSocketDisconnect as exc:
            return close_ending(exc.code, exc.reason)
    if connected:
        return Ending("lost", f"nothing received for {within:g}s")
    return Ending("lost", "no welcome within the connect timeout")
