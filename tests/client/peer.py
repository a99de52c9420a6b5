"""A minimal live server on a real socket, scripted per request: for client behaviour the
real server does not produce on demand (shedding, a resync with a delay, refused endpoints).

``Peer`` is a raw ASGI app served by Hypercorn inside the test's own event loop (asyncio or
trio) on a socket bound before serving, so it accepts connections as soon as ``serve_peer``
yields. It answers successive WebSocket, SSE and full-sync requests with the scripted
``Act``s, then with its ``*_then`` act (a welcome, an empty full document); it serves its
``log`` of video deltas through ``GET /api/sync/delta`` in pages of two; it records when each
request arrived, and ``wait_for`` wakes on each.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal
from urllib.parse import parse_qsl

import anyio
import msgpack
import orjson
from hypercorn.asyncio import serve as serve_asyncio
from hypercorn.config import Config
from hypercorn.trio import serve as serve_trio

from realtube_push.client import wire

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

EPOCH = "peer-epoch"


@dataclass(frozen=True)
class Act:
    """How the peer answers one live request.

    ``overloaded``: WebSocket accepted, ``reconnect`` notice (reason ``overloaded``,
    ``retryAfterMs`` = ``ms``) unless ``ms`` is None, then close 1013. ``refuse``: HTTP
    ``status`` with ``Retry-After: seconds`` unless None (before the upgrade for WebSocket).
    ``resync``: welcome, then a ``resync`` frame with ``retryAfterMs`` = ``ms`` and the end
    (close 4000 on WebSocket). ``welcome``: welcome, then nothing until the client goes (for
    a full sync: the document).
    """

    kind: Literal["overloaded", "refuse", "resync", "welcome"]
    ms: int | None = None
    seconds: int | None = 1
    status: int = 503


@dataclass
class Peer:
    """The scripted server; ``ws``/``sse`` are consumed one act per request."""

    ws: list[Act] = field(default_factory=list)
    sse: list[Act] = field(default_factory=list)
    full: list[Act] = field(default_factory=list)
    ws_then: Act = Act("welcome")
    sse_then: Act = Act("welcome")
    #: video deltas (``seq`` 1, 2, ...) that ``GET /api/sync/delta`` serves
    log: list[dict[str, Any]] = field(default_factory=list)
    #: (path, anyio.current_time()) of every request, in arrival order
    requests: list[tuple[str, float]] = field(default_factory=list)
    #: the ``cursor`` of each delta request
    delta_cursors: list[int] = field(default_factory=list)
    #: when each ``resync`` frame was sent
    resyncs_sent: list[float] = field(default_factory=list)
    _arrived: anyio.Event = field(default_factory=anyio.Event)

    def times(self, path: str) -> list[float]:
        """When requests for ``path`` arrived."""
        return [t for p, t in self.requests if p == path]

    async def wait_for(self, predicate: Callable[[Peer], bool]) -> None:
        """Return once ``predicate(self)`` holds; re-checked at each request."""
        while not predicate(self):
            await self._arrived.wait()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path = scope["path"]
        self.requests.append((path, anyio.current_time()))
        self._arrived.set()
        self._arrived = anyio.Event()
        if scope["type"] == "websocket":
            await self._websocket(receive, send, self.ws.pop(0) if self.ws else self.ws_then)
        elif path == wire.SSE_PATH:
            await self._sse(receive, send, self.sse.pop(0) if self.sse else self.sse_then)
        elif path == wire.FULL_PATH:
            await self._full(send, self.full.pop(0) if self.full else Act("welcome"))
        elif path == wire.DELTA_PATH:
            await self._delta_page(scope, send)
        else:
            await _respond(send, 404, b'{"error": {"code": "NOT_FOUND"}}', "application/json")

    async def _full(self, send: Send, act: Act) -> None:
        if act.kind == "refuse":
            await _refuse(send, act)
            return
        doc = {"videos": [], "channels": [], "cursor": 0, "epoch": EPOCH}
        await _respond(send, 200, orjson.dumps(doc), "application/json", [(b"etag", b'"v1"')])

    async def _delta_page(self, scope: Scope, send: Send) -> None:
        query = dict(parse_qsl(scope["query_string"].decode()))
        assert query["epoch"] == EPOCH
        cursor = int(query["cursor"])
        self.delta_cursors.append(cursor)
        after = [d for d in self.log if d["seq"] > cursor]
        rows = after[:2]
        page = {
            "videos": rows,
            "channels": [],
            "cursor": rows[-1]["seq"] if rows else cursor,
            "epoch": EPOCH,
            "hasMore": len(after) > 2,
        }
        await _respond(send, 200, orjson.dumps(page), "application/json")

    async def _websocket(self, receive: Receive, send: Send, act: Act) -> None:
        await receive()  # websocket.connect
        if act.kind == "refuse":
            start = {"type": "websocket.http.response.start", "status": act.status}
            await send({**start, "headers": _retry_after(act)})
            await send({"type": "websocket.http.response.body", "body": b""})
            return
        await send({"type": "websocket.accept", "subprotocol": wire.MSGPACK_SUBPROTOCOL})

        async def frame(body: dict[str, Any]) -> None:
            await send({"type": "websocket.send", "bytes": msgpack.packb(body)})

        if act.kind == "overloaded":
            if act.ms is not None:
                await frame({"t": "reconnect", "reason": "overloaded", "retryAfterMs": act.ms})
            await send({"type": "websocket.close", "code": wire.CLOSE_TRY_LATER})
            return
        await receive()  # the hello
        await frame(_welcome())
        if act.kind == "resync":
            self.resyncs_sent.append(anyio.current_time())
            await frame(_resync(act.ms))
            await send({"type": "websocket.close", "code": wire.CLOSE_RESYNC})
            return
        while (await receive())["type"] != "websocket.disconnect":
            pass

    async def _sse(self, receive: Receive, send: Send, act: Act) -> None:
        if act.kind == "refuse":
            await _refuse(send, act)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await _chunk(send, "retry: 2000\n\n" + _event(_welcome()))
        if act.kind == "resync":
            self.resyncs_sent.append(anyio.current_time())
            await _chunk(send, _event(_resync(act.ms)))
            await send({"type": "http.response.body", "body": b""})
            return
        while (await receive())["type"] != "http.disconnect":
            pass


@contextlib.asynccontextmanager
async def serve_peer(peer: Peer, backend: str) -> AsyncIterator[str]:
    """Serve ``peer`` on 127.0.0.1 in the current event loop (``backend``: the test's
    ``anyio_backend``, ``"asyncio"`` or ``"trio"``); yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # Hypercorn owns (and closes) the socket now
    config.accesslog = None
    config.graceful_timeout = 1.0  # the clients are gone by then: their handlers end at once
    serve = serve_trio if backend == "trio" else serve_asyncio
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(serve, peer, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            # a graceful stop: Hypercorn's asyncio server does not survive a cancellation
            stop.set()


def _retry_after(act: Act) -> list[tuple[bytes, bytes]]:
    return [] if act.seconds is None else [(b"retry-after", str(act.seconds).encode())]


async def _refuse(send: Send, act: Act) -> None:
    """The REST error answer of a refusal (503: the shedding body of docs/protocol.md)."""
    error: dict[str, Any] = {"code": "OVERLOADED", "message": "try later"}
    if act.status != 503:
        error = {"code": "REFUSED", "message": f"status {act.status}"}
    elif act.seconds is not None:
        error["retryAfter"] = act.seconds
    body = orjson.dumps({"error": error})
    await _respond(send, act.status, body, "application/json", _retry_after(act))


def _welcome() -> dict[str, Any]:
    return {
        "t": "welcome",
        "v": 1,
        "epoch": EPOCH,
        "seq": 0,
        "instance": "peer",
        "heartbeat": 20,
        "resume": "live",
    }


def _resync(ms: int | None) -> dict[str, Any]:
    frame: dict[str, Any] = {"t": "resync", "epoch": EPOCH, "seq": 0, "reason": "epoch"}
    if ms is not None:
        frame["retryAfterMs"] = ms
    return frame


def _event(frame: dict[str, Any]) -> str:
    return f"event: {frame['t']}\ndata: {orjson.dumps(frame).decode()}\n\n"


async def _chunk(send: Send, text: str) -> None:
    await send({"type": "http.response.body", "body": text.encode(), "more_body": True})


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    all_headers = [(b"content-type", content_type.encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
