"""HTTP/1.1 serving with Hypercorn's protocol stack, and a drain that loses no request.

Hypercorn's own ``serve`` ends a process's keep-alive connections abruptly: on shutdown it
closes every idle connection at once (a client that had just sent its next request on one
gets a reset or an empty reply) and closes the listener at the same moment, while responses
still in flight go out without ``Connection: close``, so their clients reuse a connection that
is about to vanish. Its idle timer waits with ``asyncio.wait_for``, which on Python 3.11 can
swallow the cancellation a request arriving at that moment sends it: the request runs (a
vote is committed and logged 200) while the connection closes under it.

This module serves the way Hypercorn does (its connection and protocol classes, so HTTP,
WebSocket and the live fast path are unchanged) but drains in an order a client can follow:

1. From the start of the drain every response carries ``Connection: close`` and its
   connection closes once the response is complete, so a busy keep-alive client finishes its
   request and reconnects.
2. A connection idle between requests is closed once it has been idle for
   ``IDLE_GRACE_SECONDS``: a client that has just read a response and is sending its next
   request is answered (with ``Connection: close``) rather than having the connection close
   under its request; after that long, a client notices the close before reusing it.
3. Then the listener goes. Before closing it, new connection attempts are dropped in the
   kernel (Linux: a socket filter on the listening socket that drops SYNs) and the
   connections the kernel already accepted are taken and served, so closing the listener
   resets nobody: a client connecting now is refused (after its SYN retry), never cut off.
4. Requests still running get ``graceful_timeout`` to complete; then they are cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import select
import socket
import struct
import sys
from collections.abc import Awaitable, Callable

import structlog
from hypercorn.asyncio.lifespan import Lifespan
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.events import Event, Updated
from hypercorn.typing import AppWrapper, ASGIFramework, LifespanState
from hypercorn.utils import wrap_app

log = structlog.get_logger("realtube.http")

# How long a connection that just went idle may still bring its next request during a drain.
# A client loop reuses a connection within milliseconds; one idle this long is not mid-send.
IDLE_GRACE_SECONDS = 0.5
# The stream buffer limit asyncio.start_server uses.
STREAM_LIMIT = 2**16
# Longest wait for the kernel's accept queue to empty before the listener closes.
ACCEPT_QUEUE_WAIT_SECONDS = 1.0

_SO_ATTACH_FILTER = 26  # Linux, <asm-generic/socket.h>
# Classic BPF, run on each packet for the socket with the TCP header at offset 0:
# (code, jump if true, jump if false, constant); returns the bytes to keep, 0 = drop.
_SYN_FILTER = (
    (0x30, 0, 0, 13),  # load the byte of TCP flags
    (0x54, 0, 0, 0x12),  # keep SYN and ACK
    (0x15, 0, 1, 0x02),  # SYN alone: a new connection request
    (0x06, 0, 0, 0),  # drop it
    (0x06, 0, 0, 0xFFFFFFFF),  # anything else passes whole
)


class Connection(TCPServer):
    """Hypercorn's connection, closing when idle as the drain needs (module docstring)."""

    def __init__(
        self,
        draining: asyncio.Event,
        app: AppWrapper,
        loop: asyncio.AbstractEventLoop,
        config: Config,
        context: WorkerContext,
        state: LifespanState,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        super().__init__(app, loop, config, context, state, reader, writer)
        self._draining = draining
        # a new connection counts as idle since it opened: its first request gets the grace
        self._idle_since = self.loop.time()

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, Updated) and event.idle:
            self._idle_since = self.loop.time()
        await super().protocol_send(event)

    async def _idle_timeout(self) -> None:
        # replaces Hypercorn's, which closes at once when shutdown starts
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancellation that
        # a request arriving just as the drain starts sends this task
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.keep_alive_timeout):
                await self._draining.wait()
        while True:
            await asyncio.sleep(max(0.0, self._idle_since + IDLE_GRACE_SECONDS - self.loop.time()))
            if not self._request_arriving():
                break
            # bytes are waiting: the read loop turns them into a request (which stops this
            # timer) or notices the client's close; look again shortly
            await asyncio.sleep(0.01)
        await asyncio.shield(self._initiate_server_close())

    def _request_arriving(self) -> bool:
        """Bytes of a request are buffered, in the stream or still in the kernel (a client
        that closed its side is not arriving: its connection closes now)."""
        if self.reader.at_eof():
            return False
        buffered = getattr(self.reader, "_buffer", b"")
        if buffered:
            return True
        sock = self.writer.get_extra_info("socket")
        return sock is not None and _readable(sock.fileno())


async def serve(
    app: ASGIFramework,
    config: Config,
    sock: socket.socket,
    *,
    drain_trigger: Callable[[], Awaitable[None]],
) -> None:
    """Serve ``app`` on the listening ``sock`` until ``drain_trigger`` returns, then drain
    (module docstring) and return once every connection is done or was cancelled."""
    loop = asyncio.get_running_loop()
    wrapped: AppWrapper = wrap_app(app, config.wsgi_max_body_size, "asgi")
    lifespan_state: dict[str, object] = {}
    lifespan = Lifespan(wrapped, config, loop, lifespan_state)
    lifespan_task = loop.create_task(lifespan.handle_lifespan())
    await lifespan.wait_for_startup()
    context = WorkerContext(None)
    draining = asyncio.Event()
    connections = _Connections()

    def new_connection() -> asyncio.StreamReaderProtocol:
        connections.accepted()
        reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
        return asyncio.StreamReaderProtocol(reader, on_connection, loop=loop)

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.started()
        await Connection(draining, wrapped, loop, config, context, lifespan_state, reader, writer)

    server = await loop.create_server(new_connection, sock=sock, backlog=config.backlog)
    log.info("listening", listen=_url(sock))
    try:
        await drain_trigger()
    finally:
        # 1. every response from now on is its connection's last (Hypercorn adds
        # ``Connection: close`` once a connection reached keep_alive_max_requests)
        config.keep_alive_max_requests = 0
        # 2. idle connections close after their grace
        draining.set()
        await asyncio.sleep(IDLE_GRACE_SECONDS)
        # 3. nobody new gets in; whoever the kernel already let in is served
        await _close_listener(server, sock)
        # 4. what is still running (including connections accepted a moment ago, whose
        # handling asyncio has scheduled but not started) gets the grace period
        await asyncio.sleep(0)
        cancelled = await connections.finish(config.graceful_timeout)
        await lifespan.wait_for_shutdown()
        lifespan_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lifespan_task
        log.info("http_drained", cancelled=cancelled)


class _Connections:
    """Every connection from the moment the server accepts it until its handling is done:
    counted at accept, since its task only starts an event-loop turn later."""

    def __init__(self) -> None:
        self._open = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._all_done = asyncio.Event()

    def accepted(self) -> None:
        self._open += 1
        self._all_done.clear()

    def started(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._open -= 1
        if self._open == 0:
            self._all_done.set()

    async def finish(self, timeout: float) -> int:  # noqa: ASYNC109 - Hypercorn's graceful_timeout
        """Wait up to ``timeout`` for every connection, then cancel the rest; how many."""
        if self._open == 0:
            return 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._all_done.wait()
        pending = set(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        return len(pending)


async def _close_listener(server: asyncio.Server, sock: socket.socket) -> None:
    """Close the listener without resetting a connection the kernel already accepted."""
    fileno = sock.fileno()
    if _drop_new_connections(sock):
        deadline = asyncio.get_running_loop().time() + ACCEPT_QUEUE_WAIT_SECONDS
        # kernel state has no event to wait on; the server's accept loop takes them meanwhile
        while _readable(fileno) and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    server.close()
    await server.wait_closed()


def _drop_new_connections(sock: socket.socket) -> bool:
    """Attach a socket filter that drops connection requests (a SYN without ACK) to the
    listening socket: the kernel starts no new handshake (the client's SYN goes unanswered
    until the listener is gone, then it is refused), while handshakes already under way
    complete and their connections, which inherit the filter, carry data as usual. False
    where that is not available (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    program = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in _SYN_FILTER))
    fprog = struct.pack("HP", len(_SYN_FILTER), ctypes.addressof(program))
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True


def _readable(fileno: int) -> bool:
    """Whether the socket has something to read (data, EOF, or a connection to accept)."""
    if fileno < 0:
        return False
    poller = select.poll()  # not select(): descriptors of a busy process pass FD_SETSIZE
    poller.register(fileno, select.POLLIN)
    return bool(poller.poll(0))


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
