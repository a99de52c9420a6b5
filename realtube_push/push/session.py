"""One live connection's state, independent of its transport (WebSocket or SSE).

Promises:
- frames leave in seq order and are contiguous: each ``deltas`` frame starts right after
  the previous one ended (an empty frame covers seqs the subscription filtered out), so the
  client's cursor is always exact;
- memory is bounded: at most ``max_queued_frames`` frames wait; past that they are
  conflated into one (latest delta per entity), and if the conflated backlog still exceeds
  ``max_pending_deltas`` it is dropped and the client is told to resync;
- a session ends with exactly one final frame (resync, reconnect or error) and close code.

Two ways out, behind one interface (``push/sinks.py``): a ``PushSink`` writes frames to the
socket as they are offered, inside the hub's pass, with no task per connection; a ``PullSink``
holds them for a writer task (SSE, the admin stream, WebSocket where the socket is out of
reach). Both send what ``ready`` chooses, in the same order.

Tricky case: the hub's merged batches and a resuming client's replay can overlap. The
session remembers the last seq it accepted (``offered_to``) and trims anything at or below it,
so a delta is never sent twice and never skipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import anyio

from realtube_push.push import protocol
from realtube_push.push.frames import Frame, conflate, empty_frame
from realtube_push.push.protocol import Codec, Subscription
from realtube_push.push.sinks import GONE, PullSink, Sink


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Per-connection bounds and timers (from settings)."""

    max_queued_frames: int
    max_pending_deltas: int
    heartbeat_seconds: float
    empty_flush_seconds: float
    send_timeout_seconds: float = 15.0
    idle_seconds: float | None = None  # end the session when the client is silent this long
    # pings a client may send while the answer to an earlier one still waits to be written
    # (it does not read); past this it is closed as a flood
    max_unanswered_pings: int = 8


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What the transport must send next; ``close_code`` set means: then close."""

    data: bytes | str
    frame: Frame | None = None
    close_code: int | None = None


class Backlog:
    """How many of a hub's sessions have frames waiting (kept by the sessions themselves)."""

    __slots__ = ("_below", "count", "threshold")

    def __init__(self) -> None:
        self.count = 0
        self.threshold = 0
        self._below: anyio.Event | None = None

    def changed(self, delta: int) -> None:
        self.count += delta
        if self._below is not None and self.count <= self.threshold:
            self._below.set()

    async def wait_below(self, threshold: int, *, at_most: float) -> None:
        """Until at most ``threshold`` sessions have frames waiting, or ``at_most`` seconds."""
        if self.count <= threshold:
            return
        self.threshold, self._below = threshold, anyio.Event()
        with anyio.move_on_after(at_most):
            await self._below.wait()
        self._below = None


class Session:
    """State of one subscriber: subscription, cursor, bounded queue, final notice."""

    __slots__ = (
        "_counted",
        "_final",
        "_last_ping",
        "_last_sent",
        "_pong",
        "_queue",
        "_superseded_pings",
        "backlog",
        "client_ip",
        "closing",
        "codec",
        "conflated",
        "epoch",
        "last_heard",
        "limits",
        "offered_to",
        "resync_reason",
        "sent_to",
        "sink",
        "stalled",
        "subscription",
        "transport",
    )

    def __init__(
        self,
        *,
        transport: str,
        codec: Codec,
        subscription: Subscription,
        client_ip: str,
        limits: SessionLimits,
        sink: Sink | None = None,
    ) -> None:
        self.transport = transport
        self.codec = codec
        self.subscription = subscription
        self.client_ip = client_ip
        self.limits = limits
        # where output goes: a writer task's (the default, and a WebSocket's until it is
        # attached to its socket), then a socket's or, once the session left, nowhere
        self.sink: Sink = sink if sink is not None else PullSink()
        self.conflated = 0  # deltas superseded by conflation (a metric when the session ends)
        # nothing more is offered or written: a final notice is set, or the session left
        self.closing = False
        self.epoch = ""
        self.sent_to = 0
        self.offered_to = 0
        # lists, not deques: both are nearly always empty, and an empty deque is ten times
        # the size of an empty list (this is per connection, times ten thousand)
        self._queue: list[Frame] = []
        # the answer to the client's latest ping, until written; never a queue of them: a
        # client that pings without reading would make it grow without bound
        self._pong: dict[str, Any] | None = None
        self._superseded_pings = 0
        self._final: tuple[dict[str, Any], int] | None = None
        self._last_ping = time.monotonic()
        self._last_sent = time.monotonic()
        self.resync_reason: str | None = None
        self.stalled = False  # ended because the client stopped reading (set by the sink)
        self.last_heard = time.monotonic()  # the transport's reader updates it
        # the hub's count of sessions with frames waiting; this session is in it while
        # ``_counted`` is true
        self.backlog: Backlog | None = None
        self._counted = False

    @property
    def queued_frames(self) -> int:
        """Frames waiting to be written (bounded by ``max_queued_frames``)."""
        return len(self._queue)

    def start_at(self, epoch: str, seq: int) -> None:
        """The client is at ``seq`` (after its replay); later offers continue from there."""
        self.epoch = epoch
        self.sent_to = seq
        self.offered_to = seq

    def offer(self, frame: Frame) -> bool:
        """Take a frame from the hub (never blocks; conflates or resyncs past the bounds).

        True when it was written to the socket right away (push mode, nothing waiting ahead
        of it): the hub counts those; anything else is counted when written.
        """
        if self.closing or frame.last <= self.offered_to:
            return False
        if frame.first <= self.offered_to:
            frame = _trim(frame, self.offered_to)
        self.offered_to = frame.last
        if (
            frame.size
            and frame.first == self.sent_to + 1
            and not self._queue
            and self._pong is None
            and self.sink.write_now(frame, self.codec)
        ):
            # the fan-out's common case, kept short: it runs once per session per pass
            self.sent_to = frame.last
            self._last_sent = time.monotonic()
            return True
        if frame.size == 0:
            # only moves the cursor: flushed as an empty frame when idle. Wake the writer all
            # the same, or it sleeps until the next heartbeat before arming that flush.
            self.sink.notify(self)
            return False
        self._queue.append(frame)
        if len(self._queue) > self.limits.max_queued_frames:
            merged, superseded = conflate(list(self._queue))
            self._queue.clear()
            self.conflated += superseded
            if merged.size > self.limits.max_pending_deltas:
                self.resync("slow")
                return False
            self._queue.append(merged)
        self._recount()
        self.sink.notify(self)
        return False

    def detach(self) -> None:
        """Leave the hub (the session is going away): no more writes, out of the backlog."""
        self.closing = True
        self.sink = GONE
        if self._counted and self.backlog is not None:
            self.backlog.changed(-1)
        self._counted = False
        self.backlog = None

    def _recount(self) -> None:
        waiting = bool(self._queue)
        if waiting != self._counted and self.backlog is not None:
            self.backlog.changed(1 if waiting else -1)
            self._counted = waiting

    def answer_ping(self, ident: object) -> None:
        """Answer a client ping (ahead of deltas). Only the latest answer waits: a ping that
        arrives while the previous pong is still unwritten replaces it, and a client that
        keeps that up past ``max_unanswered_pings`` is closed (``FLOOD``, 1008).

        Why: a client that sends pings and never reads used to make the server queue a pong
        per ping, hundreds of megabytes in seconds. Only pings that arrive while the socket
        cannot take writes count (a burst merely waiting for the writer task does not).
        """
        if self._final is not None:
            return
        if self._pong is not None and self.sink.cannot_write():
            self._superseded_pings += 1
            if self._superseded_pings > self.limits.max_unanswered_pings:
                self._pong = None
                self.finish(
                    protocol.error("FLOOD", "pings sent faster than their answers are read"),
                    protocol.CLOSE_POLICY,
                )
                return
        self._pong = protocol.pong(ident)
        self.sink.notify(self)

    def resync(self, reason: str, *, retry_after_ms: int = 0) -> None:
        """Drop the backlog and end the session with a resync notice (the client waits
        ``retry_after_ms`` before its full sync: the server spreads a herd of them)."""
        if self._final is None:
            self._queue.clear()
            self._recount()
            self.resync_reason = reason
            self._final = (
                protocol.resync(
                    epoch=self.epoch,
                    seq=self.sent_to,
                    reason=reason,
                    retry_after_ms=retry_after_ms,
                ),
                protocol.CLOSE_RESYNC,
            )
            self.closing = True
            self.sink.notify(self)

    def finish(self, frame: dict[str, Any], close_code: int) -> None:
        """End the session with ``frame`` (reconnect or error) then ``close_code``."""
        if self._final is None:
            self._final = (frame, close_code)
            self.closing = True
            self.sink.notify(self)

    def attach(self, sink: Sink) -> None:
        """Switch to ``sink`` (a WebSocket's socket, after the welcome and replay went out
        through its writer) and write what waits."""
        self.sink = sink
        sink.notify(self)

    def final_outgoing(self) -> Outgoing | None:
        """The final notice and its close code, once the session is closing."""
        if self._final is None:
            return None
        frame, code = self._final
        return Outgoing(protocol.encode(frame, self.codec), close_code=code)

    def ready(self, now: float) -> Outgoing | None:
        """What to send next, if anything is due now (control, final, heartbeat, deltas);
        the sink that calls this sends it."""
        if self._pong is not None:
            pong, self._pong = self._pong, None
            self._superseded_pings = 0
            return Outgoing(protocol.encode(pong, self.codec))
        if self._final is not None:
            return self.final_outgoing()
        # heartbeats go out even under a sustained backlog, or a client that only answers
        # pings would be closed as idle
        if now - self._last_ping >= self.limits.heartbeat_seconds:
            self._last_ping = now
            return Outgoing(protocol.encode(protocol.ping(int(time.time())), self.codec))
        if self._queue:
            head = self._queue[0]
            if head.first > self.sent_to + 1:
                return self._sent(empty_frame(self.epoch, self.sent_to + 1, head.first - 1))
            frame = self._queue.pop(0)
            self._recount()
            return self._sent(frame)
        if self.offered_to > self.sent_to and (
            now - self._last_sent >= self.limits.empty_flush_seconds
        ):
            return self._sent(empty_frame(self.epoch, self.sent_to + 1, self.offered_to))
        return None

    def timer_due(self, now: float) -> bool:
        """A heartbeat or an empty-frame flush is due."""
        return now - self._last_ping >= self.limits.heartbeat_seconds or (
            self.offered_to > self.sent_to
            and now - self._last_sent >= self.limits.empty_flush_seconds
        )

    def waiting(self, now: float) -> bool:
        """Something waits to be written (or is due): queued frames, a pong, a cursor to
        flush, a heartbeat."""
        return bool(
            self._queue
            or self._pong is not None
            or self.offered_to > self.sent_to
            or now - self._last_ping >= self.limits.heartbeat_seconds
        )

    def tick(self, now: float) -> None:
        """The hub's periodic look: end a session whose client has been silent past
        ``idle_seconds``; the sink runs due heartbeats and empty-frame flushes and drops a
        client that stopped reading for longer than the send timeout."""
        idle = self.limits.idle_seconds
        if idle is not None and now - self.last_heard > idle and self._final is None:
            self.finish(protocol.error("IDLE", "no message from the client"), protocol.CLOSE_IDLE)
            return
        self.sink.tick(self, now)

    def _sent(self, frame: Frame) -> Outgoing:
        self.sent_to = frame.last
        self._last_sent = time.monotonic()
        return Outgoing(frame.encoded(self.codec), frame=frame)


def _trim(frame: Frame, seq: int) -> Frame:
    """The part of ``frame`` after ``seq`` (rare: a merged batch overlapping a replay)."""
    return Frame(
        frame.epoch,
        seq + 1,
        frame.last,
        [v for v in frame.videos if v["seq"] > seq],
        [c for c in frame.channels if c["seq"] > seq],
        frame.published_at,
    )
