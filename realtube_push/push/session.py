"""One live connection's state, independent of its transport (WebSocket or SSE).

Promises:
- frames leave in seq order and are contiguous: each ``deltas`` frame starts right after
  the previous one ended (an empty frame covers seqs the subscription filtered out), so the
  client's cursor is always exact;
- memory is bounded: at most ``max_queued_frames`` frames wait; past that they are
  conflated into one (latest delta per entity), and if the conflated backlog still exceeds
  ``max_pending_deltas`` it is dropped and the client is told to resync;
- a session ends with exactly one final frame (resync, reconnect or error) and close code.

Tricky case: the hub's merged batches and a resuming client's replay can overlap. The
session remembers the last seq it accepted (``offered_to``) and trims anything at or below it,
so a delta is never sent twice and never skipped.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from realtube_push.push import protocol
from realtube_push.push.frames import Frame, conflate, empty_frame
from realtube_push.push.protocol import Codec, Subscription


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Per-connection bounds and timers (from settings)."""

    max_queued_frames: int
    max_pending_deltas: int
    heartbeat_seconds: float
    empty_flush_seconds: float
    send_timeout_seconds: float = 15.0


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


class SessionStats:
    """Counters the hub turns into metrics."""

    __slots__ = ("conflated", "delivered", "frames")

    def __init__(self) -> None:
        self.delivered = 0
        self.conflated = 0
        self.frames = 0


class Session:
    """State of one subscriber: subscription, cursor, bounded queue, final notice."""

    def __init__(
        self,
        *,
        transport: str,
        codec: Codec,
        subscription: Subscription,
        client_ip: str,
        limits: SessionLimits,
        slot_reserved: bool = False,
    ) -> None:
        self.transport = transport
        self.codec = codec
        self.subscription = subscription
        self.client_ip = client_ip
        self.slot_reserved = slot_reserved  # its per-IP slot is held by the transport
        self.limits = limits
        self.stats = SessionStats()
        self.epoch = ""
        self.sent_to = 0
        self.offered_to = 0
        self._queue: deque[Frame] = deque()
        self._control: deque[dict] = deque()
        self._final: tuple[dict, int] | None = None
        self._wake = anyio.Event()
        self._last_ping = time.monotonic()
        self._last_sent = time.monotonic()
        self.resync_reason: str | None = None
        # set by the transport: when the current send started, and how to abort a stuck one
        self.sending_since: float | None = None
        self.on_stuck: Callable[[], None] | None = None
        # the hub's count of sessions with frames waiting; this session is in it while
        # ``_counted`` is true
        self.backlog: Backlog | None = None
        self._counted = False

    @property
    def queued_frames(self) -> int:
        """Frames waiting to be written (bounded by ``max_queued_frames``)."""
        return len(self._queue)

    @property
    def closing(self) -> bool:
        return self._final is not None

    def start_at(self, epoch: str, seq: int) -> None:
        """The client is at ``seq`` (after its replay); later offers continue from there."""
        self.epoch = epoch
        self.sent_to = seq
        self.offered_to = seq

    def offer(self, frame: Frame) -> None:
        """Queue a frame from the hub (never blocks; conflates or resyncs past the bounds)."""
        if self._final is not None or frame.last <= self.offered_to:
            return
        if frame.first <= self.offered_to:
            frame = _trim(frame, self.offered_to)
        self.offered_to = frame.last
        if frame.size == 0:
            # only moves the cursor: flushed as an empty frame when idle. Wake the writer all
            # the same, or it sleeps until the next heartbeat before arming that flush.
            self._wake.set()
            return
        self._queue.append(frame)
        if len(self._queue) > self.limits.max_queued_frames:
            merged, superseded = conflate(list(self._queue))
            self._queue.clear()
            self.stats.conflated += superseded
            if merged.size > self.limits.max_pending_deltas:
                self.resync("slow")
                return
            self._queue.append(merged)
        self._recount()
        self._wake.set()

    def detach(self) -> None:
        """Leave the hub's backlog count (the session is going away)."""
        if self._counted and self.backlog is not None:
            self.backlog.changed(-1)
        self._counted = False
        self.backlog = None

    def _recount(self) -> None:
        waiting = bool(self._queue)
        if waiting != self._counted and self.backlog is not None:
            self.backlog.changed(1 if waiting else -1)
            self._counted = waiting

    def send_control(self, frame: dict) -> None:
        """Queue a small control frame (pong) ahead of deltas."""
        self._control.append(frame)
        self._wake.set()

    def resync(self, reason: str) -> None:
        """Drop the backlog and end the session with a resync notice."""
        if self._final is None:
            self._queue.clear()
            self._recount()
            self.resync_reason = reason
            self._final = (
                protocol.resync(epoch=self.epoch, seq=self.sent_to, reason=reason),
                protocol.CLOSE_RESYNC,
            )
            self._wake.set()

    def finish(self, frame: dict, close_code: int) -> None:
        """End the session with ``frame`` (reconnect or error) then ``close_code``."""
        if self._final is None:
            self._final = (frame, close_code)
            self._wake.set()

    async def next_outgoing(self) -> Outgoing:
        """Wait for the next thing to send: control, deltas, heartbeat or the final notice."""
        while True:
            now = time.monotonic()
            if self._control:
                return Outgoing(protocol.encode(self._control.popleft(), self.codec))
            if self._final is not None:
                frame, code = self._final
                return Outgoing(protocol.encode(frame, self.codec), close_code=code)
            # heartbeats go out even under a sustained backlog, or a client that only
            # answers pings would be closed as idle
            if now - self._last_ping >= self.limits.heartbeat_seconds:
                self._last_ping = now
                return Outgoing(protocol.encode(protocol.ping(int(time.time())), self.codec))
            if self._queue:
                head = self._queue[0]
                if head.first > self.sent_to + 1:
                    return self._sent(empty_frame(self.epoch, self.sent_to + 1, head.first - 1))
                frame = self._queue.popleft()
                self._recount()
                return self._sent(frame)
            if self.offered_to > self.sent_to and (
                now - self._last_sent >= self.limits.empty_flush_seconds
            ):
                return self._sent(empty_frame(self.epoch, self.sent_to + 1, self.offered_to))
            # No timer here: a cancel scope per wait cost a fifth of the CPU of a fan-out. The
            # hub's sweeper calls tick() to wake the session when a timer is due.
            await self._wake.wait()
            self._wake = anyio.Event()

    def tick(self, now: float) -> None:
        """The hub's periodic look: wake the writer when a heartbeat or an empty-frame flush is
        due, and abort a send that has been stuck past the send timeout (a client that stopped
        reading)."""
        since = self.sending_since
        if since is not None and now - since > self.limits.send_timeout_seconds:
            if self.on_stuck is not None:
                self.on_stuck()
            return
        if now - self._last_ping >= self.limits.heartbeat_seconds or (
            self.offered_to > self.sent_to
            and now - self._last_sent >= self.limits.empty_flush_seconds
        ):
            self._wake.set()

    def _sent(self, frame: Frame) -> Outgoing:
        self.sent_to = frame.last
        self._last_sent = time.monotonic()
        self.stats.delivered += frame.size
        self.stats.frames += 1
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
