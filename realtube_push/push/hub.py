"""The local hub: fans committed batches out to this instance's live sessions.

Promises:
- the hub receives batches in seq order, contiguous (the bus subscriber guarantees it) and
  hands each session every batch after the position it was registered at, in order;
- a pass visits every session once and offers it everything between its position and the
  newest batch; sessions at the same position with the same subscription share one frame,
  encoded once (almost all of them: each pass moves everyone to the head);
- the head moves during a pass: a batch arriving while the pass is half-way reaches the
  sessions not yet visited in this pass and the others in the next one, so a delta waits
  at most about one pass plus one pause, not the rest of the current pass and then its
  place in the next;
- after a pass the hub pauses in proportion to its cost (``pause_factor``): batches
  arriving meanwhile leave as one frame, so more sessions mean fewer, larger frames
  rather than a growing queue, and the fan-out leaves the event loop time for the rest;
- an epoch change (the log was reset) makes every session resync, each told to wait a
  delay drawn over a window that grows with the number of sessions (``resync_spread``), and
  a shutdown sends every session away the same way (``reconnect_spread``): the herd comes
  back spread out, not in one instant.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from functools import partial

import anyio
import anyio.lowlevel
import structlog

from realtube_push.observability import Metrics
from realtube_push.push import protocol
from realtube_push.push.frames import Batch, Frame, frame_for, merge_batches
from realtube_push.push.herd import HerdSpread
from realtube_push.push.protocol import Subscription
from realtube_push.push.session import Backlog, Session

log = structlog.get_logger("realtube.hub")

BUSY_FRACTION = 10  # "most sessions busy" = more than one in ten with frames waiting
PASS_CHUNK = 100  # sessions offered a frame between two yields (the loop's latency: ~2 ms)
# the settings' defaults (LIVE_RECONNECT_*, LIVE_RESYNC_*)
RECONNECT_SPREAD = HerdSpread(rate=500, min_ms=1000, max_ms=30_000)
RESYNC_SPREAD = HerdSpread(rate=500, min_ms=0, max_ms=30_000)


class Hub:
    """Sessions of this instance and the fan-out of batches to them."""

    def __init__(
        self,
        *,
        instance: str,
        metrics: Metrics | None = None,
        pause_factor: float = 2.0,
        max_pause_seconds: float = 0.15,
        reconnect_spread: HerdSpread = RECONNECT_SPREAD,
        resync_spread: HerdSpread = RESYNC_SPREAD,
    ) -> None:
        self.instance = instance
        self.reconnect_spread = reconnect_spread
        self.resync_spread = resync_spread
        self.pause_factor = pause_factor
        self.max_pause_seconds = max_pause_seconds
        self.metrics = metrics
        self.epoch = ""
        self.seq = 0  # the head: last seq received (sessions registered now start after it)
        self.accepting = True
        self.sessions: set[Session] = set()
        # batches after the position of the session furthest behind (one pass back at most)
        self._history: deque[Batch] = deque()
        self._fanned_to = 0  # the head when the last pass began
        # (last seq, when it arrived) of the batches some session has not been offered yet:
        # the oldest one's age is how late the connected clients are (``lag``)
        self._undelivered: deque[tuple[int, float]] = deque()
        self._arrived = anyio.Event()
        self._emptied = anyio.Event()
        self.backlog = Backlog()
        if metrics is not None:
            for transport in ("ws", "sse"):  # counted when scraped, not per connection
                metrics.live_connections.labels(transport).set_function(
                    partial(self._count, transport)
                )

    def reset(self, epoch: str, seq: int) -> None:
        """Start (or restart after an epoch change) at ``(epoch, seq)``."""
        if self.epoch and epoch != self.epoch:
            log.warning("epoch_changed", old=self.epoch, new=epoch)
            sessions = list(self.sessions)
            for session in sessions:
                session.resync("epoch", retry_after_ms=self.resync_spread.draw_ms(len(sessions)))
        self._history.clear()
        self._undelivered.clear()
        self.epoch, self.seq, self._fanned_to = epoch, seq, seq

    def register(self, session: Session) -> tuple[str, int]:
        """Add a session; returns the position after which the hub will feed it."""
        self.sessions.add(session)
        session.backlog = self.backlog
        return self.epoch, self.seq

    def unregister(self, session: Session) -> None:
        """Remove a session (idempotent)."""
        if session in self.sessions:
            self.sessions.discard(session)
            session.detach()
            if not self.sessions:
                self._emptied.set()

    def publish(self, batch: Batch) -> None:
        """Accept the next contiguous batch (called by the bus subscriber, in order)."""
        if batch.last <= self.seq:
            return
        if batch.first <= self.seq:
            batch = batch.after(self.seq)
        self._history.append(batch)
        self._undelivered.append((batch.last, time.monotonic()))
        self.seq = batch.last
        self._arrived.set()

    def lag(self) -> float:
        """Seconds since the oldest batch that has not yet been offered to every session
        arrived (0 when all have): what the connected clients wait now, fan-out and pauses
        included. Admission sheds new connections while it is too long."""
        if not self._undelivered:
            return 0.0
        return time.monotonic() - self._undelivered[0][1]

    def connections_by_transport(self) -> Counter[str]:
        """Sessions per transport (``ws``, ``sse``, ``admin``)."""
        return Counter(s.transport for s in self.sessions)

    def _count(self, transport: str) -> int:
        return sum(1 for s in self.sessions if s.transport == transport)

    async def run(self, *, sweep_seconds: float = 0.5) -> None:
        """Fan out forever (each pass takes everything that arrived since the last one), and
        sweep the sessions' timers every ``sweep_seconds``."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._sweep, sweep_seconds)
            await self._fan_out_forever()

    async def _sweep(self, interval: float) -> None:
        # One loop over all sessions instead of a timer per session: heartbeats, empty-frame
        # flushes and stuck sends are all due at most ``interval`` late.
        while True:
            await anyio.sleep(interval)
            now = time.monotonic()
            sessions = list(self.sessions)
            for start in range(0, len(sessions), PASS_CHUNK):
                if start:
                    await anyio.lowlevel.checkpoint()
                for session in sessions[start : start + PASS_CHUNK]:
                    session.tick(now)

    async def _fan_out_forever(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived = anyio.Event()
            if self.seq == self._fanned_to:
                continue
            started = time.perf_counter()
            await self.fan_out()
            # let writer tasks (pull mode) run before the next pass, so a burst gets merged
            await anyio.lowlevel.checkpoint()
            await self._pace(time.perf_counter() - started)

    async def _pace(self, pass_seconds: float) -> None:
        """Adaptive batching: hold the next pass so the batches arriving meanwhile leave as
        one shared frame. The pause grows with the pass's cost (``pause_factor``), and while
        most pull-mode sessions still have frames waiting it lasts until they catch up,
        instead of each busy session conflating its own (an encoding per session); both
        are capped at ``max_pause_seconds``."""
        cap = self.max_pause_seconds
        deadline = time.perf_counter() + min(cap, self.pause_factor * pass_seconds)
        await self.backlog.wait_below(max(1, len(self.sessions) // BUSY_FRACTION), at_most=cap)
        remaining = deadline - time.perf_counter()
        if remaining > 0:
            await anyio.sleep(remaining)

    async def fan_out(self) -> None:
        """One pass: offer every session what lies between its position and the head.

        Sessions in push mode write it to their sockets right here. The pass yields to the
        event loop every ``PASS_CHUNK`` sessions, so requests keep being served, and picks
        up the batches that arrived meanwhile. A session registered meanwhile starts at the
        head (its replay covers the rest); one that left ignores the offer.
        """
        previous, self._fanned_to = self._fanned_to, self.seq
        # every session is offered at least this far by the pass's end (unless the epoch
        # changes meanwhile: ``reset`` then starts the count afresh)
        covered, epoch = self.seq, self.epoch
        # every session was moved to at least ``previous`` by the last pass (or registered
        # after it, at a later head): older batches are no longer needed
        while self._history and self._history[0].last <= previous:
            self._history.popleft()
        sessions = list(self.sessions)
        frames: dict[tuple[Subscription, int], Frame] = {}
        written = deltas = 0
        head = self.seq
        last_subscription: Subscription | None = None
        last_position = -1
        frame: Frame | None = None
        # the pass's own CPU (the thread's, between yields): what a frame costs against the
        # bare write (bench/write_floor.py), without the rest of the process
        cpu = 0.0
        for start in range(0, len(sessions), PASS_CHUNK):
            if start:
                await anyio.lowlevel.checkpoint()
                if self.seq != head:  # batches arrived: the rest of the pass takes them too
                    head, frames, last_subscription = self.seq, {}, None
            chunk_started = time.thread_time()
            for session in sessions[start : start + PASS_CHUNK]:
                position = session.offered_to
                if position >= head or session.closing:
                    continue
                subscription = session.subscription
                if subscription is not last_subscription or position != last_position:
                    # consecutive sessions nearly always share both: look the frame up once
                    last_subscription, last_position = subscription, position
                    frame = frames.get((subscription, position))
                    if frame is None:
                        batch = self._since(position)
                        if batch is None:
                            session.resync("slow")
                            last_subscription = None
                            continue
                        frame = frames[subscription, position] = frame_for(batch, subscription)
                if frame is not None and session.offer(frame):
                    written += 1
                    deltas += frame.size
            cpu += time.thread_time() - chunk_started
        while self.epoch == epoch and self._undelivered and self._undelivered[0][0] <= covered:
            self._undelivered.popleft()
        if self.metrics is not None:
            self.metrics.live_fanout_cpu.inc(cpu)
        if self.metrics is not None and written:
            # counted per pass, not per write: a metric update per socket was 5 % of a pass
            self.metrics.live_frames.inc(written)
            self.metrics.live_delivered.inc(deltas)
            # from the oldest batch's publish to the last subscriber's write
            oldest = next((b for b in self._history if b.last > previous), None)
            if oldest is not None:
                self.metrics.live_fanout_lag.observe(max(time.time() - oldest.published_at, 0))

    def _since(self, position: int) -> Batch | None:
        """The history after ``position`` as one batch (up to the head), or None if it no
        longer reaches back that far (cannot happen while every session is visited each
        pass; the session would then be told to resync rather than get a hole)."""
        batches = [b for b in self._history if b.last > position]
        if not batches or batches[0].first > position + 1:
            log.error("hub_history_short", position=position, head=self.seq)
            return None
        return merge_batches(batches).after(position)

    async def shutdown(self, *, wait_seconds: float) -> None:
        """Tell every session to reconnect elsewhere, each after its own delay drawn over
        the ``reconnect_spread`` window for this many sessions, then wait (bounded) for
        them to go."""
        self.accepting = False
        sessions = list(self.sessions)
        for session in sessions:
            delay = self.reconnect_spread.draw_ms(len(sessions))
            session.finish(
                protocol.reconnect(reason="shutdown", retry_after_ms=delay), protocol.CLOSE_RESTART
            )
        if self.sessions:
            self._emptied = anyio.Event()
            with anyio.move_on_after(wait_seconds):
                await self._emptied.wait()
        log.info("live_sessions_closed", remaining=len(self.sessions))
