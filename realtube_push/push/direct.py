"""Writing WebSocket frames straight to a connection's socket, past the per-message ASGI path.

Why: a fan-out writes the same frame to thousands of connections. Through ASGI each write is
``await send(...)`` -> Hypercorn's stream -> wsproto framing -> a lock and a drain per
message: ~40 % of a busy process went there. A shared frame is framed once
(``push/framing.py``) and each connection costs one ``transport.write``.

How: Hypercorn (asyncio worker, HTTP/1.1) hands the ASGI app ``WSStream.app_send``; its
stream writes through ``H11Protocol.stream_send`` to ``TCPServer.protocol_send``, whose
``StreamWriter`` owns the transport. ``socket_for`` follows that chain with type checks and
returns None for anything else (HTTP/2 WebSockets, another server), where the caller keeps
the ASGI path. Hypercorn still owns the connection: it answers pings, frames the close
handshake and notices EOF; interleaving is safe because every write here is one whole frame.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.ws_stream import WSStream


class DirectSocket:
    """A connection's transport, written to without awaiting: the caller checks
    ``congested`` first, so at most ``high_water`` bytes (plus one frame) wait in user space."""

    # the transport's methods, bound once: this runs per session per fan-out pass
    __slots__ = ("_buffered", "_is_closing", "abort", "high_water", "write")

    def __init__(self, transport: asyncio.WriteTransport, *, high_water: int) -> None:
        self.high_water = high_water
        self._buffered = transport.get_write_buffer_size
        self._is_closing = transport.is_closing
        # write(message): queue one pre-framed message (see ``push/framing.py``)
        self.write = transport.write
        # abort(): drop the connection now, unsent bytes and all (a client that stopped reading)
        self.abort = transport.abort

    def congested(self) -> bool:
        """True when the peer is not keeping up (or the connection is going away)."""
        return self._is_closing() or self._buffered() > self.high_water


def decline_compression(send: Any) -> None:
    """Accept this WebSocket without permessage-deflate (call before ``websocket.accept``).

    Why: frames written here are never compressed (they are framed once and shared), and a
    client's own messages are a few tiny frames, so the extension would buy nothing and cost
    each compressing client (every browser) a zlib inflater with a 32 KiB window on the
    server. A no-op outside Hypercorn.
    """
    stream = getattr(send, "__self__", None)
    if isinstance(stream, WSStream):
        stream.handshake.extensions = None


def socket_for(send: Any, *, high_water: int) -> DirectSocket | None:
    """The direct writer under an ASGI WebSocket ``send`` callable, or None (see module doc)."""
    stream = getattr(send, "__self__", None)
    if not isinstance(stream, WSStream):
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
    return DirectSocket(transport, high_water=high_water)
