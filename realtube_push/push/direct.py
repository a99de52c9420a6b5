"""The WebSocket connection under Hypercorn's ASGI ``send``: its socket for direct writes,
and what the live route adjusts at the handshake.

Why direct writes: a fan-out writes the same frame to thousands of connections. Through ASGI
each write is ``await send(...)`` -> Hypercorn's stream -> wsproto framing -> a lock and a
drain per message: ~40 % of a busy process went there. A shared frame is framed once
(``push/framing.py``) and each connection costs one ``transport.write``.

How: Hypercorn (asyncio worker, HTTP/1.1) hands the ASGI app ``WSStream.app_send``; its
stream writes through ``H11Protocol.stream_send`` to ``TCPServer.protocol_send``, whose
``StreamWriter`` owns the transport. ``socket_for`` follows that chain with type checks and
returns None for anything else (HTTP/2 WebSockets, another server, a middleware wrapping
``send``), where the caller keeps the ASGI path and says so (the ``write_mode`` metric).
These are Hypercorn's internals, not its API: ``pyproject.toml`` pins Hypercorn exactly, and
the integration tests fail if the default stack stops writing directly.

Hypercorn still owns the connection: it answers pings, frames the close handshake and
notices EOF; interleaving is safe because every write here is one whole frame. It may also
send a Close of its own (1009 for a message over the size limit, its answer to the client's
Close) before the app hears of it: ``DirectSocket`` reads the state of the connection's
wsproto ``Connection`` and stops writing the moment either side has sent a Close
(RFC 6455 section 5.5.1: no data frame after a Close).
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.ws_stream import WSStream
from wsproto.connection import Connection, ConnectionState
from wsproto.events import CloseConnection, Event

_OPEN = ConnectionState.OPEN


class DirectSocket:
    """A connection's transport, written to without awaiting: the caller checks
    ``congested`` first, so at most ``high_water`` bytes (plus one frame) wait in user space."""

    # the transport's methods, bound once: this runs per session per fan-out pass
    __slots__ = ("_buffered", "_connection", "_is_closing", "abort", "high_water", "write")

    def __init__(
        self, transport: asyncio.WriteTransport, connection: Connection, *, high_water: int
    ) -> None:
        self.high_water = high_water
        self._connection = connection
        self._buffered = transport.get_write_buffer_size
        self._is_closing = transport.is_closing
        # write(message): queue one pre-framed message (see ``push/framing.py``)
        self.write = transport.write
        # abort(): drop the connection now, unsent bytes and all (a client that stopped reading)
        self.abort = transport.abort

    def congested(self) -> bool:
        """True when nothing may be written now: the peer is not keeping up, a Close has been
        sent or received, or the connection is going away."""
        return (
            self._connection.state is not _OPEN
            or self._is_closing()
            or self._buffered() > self.high_water
        )


def _stream(send: Any) -> WSStream | None:
    stream = getattr(send, "__self__", None)
    return stream if isinstance(stream, WSStream) else None


def decline_compression(send: Any) -> None:
    """Accept this WebSocket without permessage-deflate (call before ``websocket.accept``).

    Why: frames written here are never compressed (they are framed once and shared), and a
    client's own messages are a few tiny frames, so the extension would buy nothing and cost
    each compressing client (every browser) a zlib inflater with a 32 KiB window on the
    server. A no-op outside Hypercorn.
    """
    stream = _stream(send)
    if stream is not None:
        stream.handshake.extensions = None


class _FailingConnection(Connection):
    """wsproto's connection, except that a frame it cannot accept fails the connection with
    a Close carrying the code (RFC 6455 section 7.1.7) instead of a bare TCP close.

    wsproto reports such a frame (unmasked, RSV bits set, invalid UTF-8 in a text message, a
    Close with an invalid code...) as a ``CloseConnection`` event with the code (1002 or
    1007) but leaves the connection OPEN, and Hypercorn answers a Close only in
    REMOTE_CLOSING: the connection would drop without one. Marking it REMOTE_CLOSING makes
    Hypercorn send that code back before it closes the TCP connection.
    """

    def events(self) -> Generator[Event, None, None]:
        for event in super().events():
            if isinstance(event, CloseConnection) and self.state is _OPEN:
                # only a parse failure yields a Close while the state stays OPEN
                self._state = ConnectionState.REMOTE_CLOSING
            yield event


def fail_with_close_code(send: Any) -> None:
    """After ``websocket.accept``: answer a protocol-violating frame from the client with the
    Close code RFC 6455 gives it (1002, or 1007 for invalid UTF-8), then close. A no-op
    outside Hypercorn."""
    stream = _stream(send)
    if stream is not None and type(stream.connection) is Connection:
        # same layout, one method more: the connection Hypercorn created, with its state
        stream.connection.__class__ = _FailingConnection


def socket_for(send: Any, *, high_water: int) -> DirectSocket | None:
    """The direct writer under an accepted ASGI WebSocket ``send``, or None (see module
    doc)."""
    stream = _stream(send)
    if stream is None:
        return None
    protocol = getattr(stream.send, "__self__", None)
    if not isinstance(protocol, H11Protocol):
        return None
    server = getattr(protocol.send, "__self__", None)
    if not isinstance(server, TCPServer):
        return None
    transport = server.writer.transport
    if not hasattr(transport, "get_write_buffer_size"):
        return None
    return DirectSocket(transport, stream.connection, high_water=high_water)
