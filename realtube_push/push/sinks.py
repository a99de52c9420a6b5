"""Where a session's output goes: two sinks behind one interface.

- ``PushSink`` (WebSocket over HTTP/1.1, the normal case): frames are written to the
  connection's socket as they are offered, inside the hub's pass, with no task per
  connection. A frame waits in the session's queue only while the socket is congested; the
  final notice is handed to the connection (``on_final``), which sends it and the Close
  through ASGI.
- ``PullSink`` (SSE, the admin stream, WebSocket where the socket is out of reach): a writer
  task awaits ``next_outgoing`` and sends each message through the server.

The session decides *what* goes next (``Session.ready``); a sink decides *when* it can be
written and notices a client that stopped reading (``tick``, from the hub's sweeper).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import anyio

from realtube_push.push.framing import ws_message

if TYPE_CHECKING:
    from realtube_push.push.frames import Frame
    from realtube_push.push.protocol import Codec
    from realtube_push.push.session import Outgoing, Session


class Sink(Protocol):
    """What a session needs of its way out."""

    def write_now(self, frame: Frame, codec: Codec) -> bool:
        """Write ``frame`` at once if this sink can (the fan-out's fast path); False: queue it."""
        ...

    def notify(self, session: Session) -> None:
        """Something became ready in ``session`` (a frame, a pong, the final notice)."""
        ...

    def cannot_write(self) -> bool:
        """True while the client is not taking what was written."""
        ...

    def tick(self, session: Session, now: float) -> None:
        """The sweeper's periodic look: due timers, and a client stuck past the send timeout."""
        ...


class Socket(Protocol):
    """A connection's socket, written to without awaiting (``push.direct.DirectSocket``)."""

    def congested(self) -> bool: ...
    def write(self, data: bytes) -> None: ...
    def abort(self) -> None: ...


class PushSink:
    """Writes to the socket inside the hub's pass; nothing waits on a task."""

    __slots__ = ("_congested_since", "_on_final", "_on_written", "socket")

    def __init__(
        self,
        socket: Socket,
        *,
        on_final: Callable[[], None],
        on_written: Callable[[int], None],
    ) -> None:
        self.socket = socket
        self._on_final = on_final  # the session ended: the connection sends the final notice
        self._on_written = on_written  # a deltas frame of this many deltas went out
        self._congested_since: float | None = None

    def write_now(self, frame: Frame, codec: Codec) -> bool:
        socket = self.socket
        if socket.congested():
            return False
        socket.write(frame.wire(codec))
        return True

    def cannot_write(self) -> bool:
        return self.socket.congested()

    def notify(self, session: Session) -> None:
        """Write whatever is ready while the socket takes more; hand the final notice over
        (frames still queued wait for the next offer or tick)."""
        socket = self.socket
        now = time.monotonic()
        while not socket.congested():
            out = session.ready(now)
            if out is None:
                return
            if out.close_code is not None:
                break
            frame = out.frame
            if frame is None:
                socket.write(ws_message(out.data))
            else:
                socket.write(frame.wire(session.codec))
                self._on_written(frame.size)
        if session.closing:
            self._on_final()

    def tick(self, session: Session, now: float) -> None:
        if not session.waiting(now):
            return  # nothing waits: the common case, and this runs for every session
        if not self.socket.congested():
            self._congested_since = None
        elif self._congested_since is None:
            self._congested_since = now
        elif now - self._congested_since > session.limits.send_timeout_seconds:
            # a graceful close would wait behind the bytes the client does not read
            session.stalled = True
            self.socket.abort()
            return
        self.notify(session)


class PullSink:
    """Holds what is ready until a writer task asks for it (``next_outgoing``)."""

    __slots__ = ("_wake", "on_stuck", "sending_since")

    def __init__(self) -> None:
        self._wake: anyio.Event | None = None  # the writer, waiting
        # when the send in flight started (set by the writer), and how to end a connection
        # whose send stays blocked past the send timeout
        self.sending_since: float | None = None
        self.on_stuck: Callable[[], None] | None = None

    def write_now(self, frame: Frame, codec: Codec) -> bool:
        return False

    def cannot_write(self) -> bool:
        return self.sending_since is not None

    def notify(self, session: Session) -> None:
        if self._wake is not None:
            self._wake.set()

    def tick(self, session: Session, now: float) -> None:
        since = self.sending_since
        if since is not None and now - since > session.limits.send_timeout_seconds:
            session.stalled = True
            if self.on_stuck is not None:
                self.on_stuck()
        elif session.timer_due(now):
            self.notify(session)

    async def next_outgoing(self, session: Session) -> Outgoing:
        """Wait for the next thing to send (control, deltas, heartbeat or the final notice)."""
        while True:
            out = session.ready(time.monotonic())
            if out is not None:
                return out
            # No timer here: a cancel scope per wait cost a fifth of the CPU of a fan-out. The
            # hub's sweeper ticks the session, which wakes this writer when a timer is due.
            self._wake = anyio.Event()
            await self._wake.wait()
            self._wake = None


class _Gone:
    """The sink of a session that left its hub: takes nothing, wakes nobody."""

    __slots__ = ()

    def write_now(self, frame: Frame, codec: Codec) -> bool:
        return False

    def cannot_write(self) -> bool:
        return True

    def notify(self, session: Session) -> None:
        pass

    def tick(self, session: Session, now: float) -> None:
        pass


GONE = _Gone()
