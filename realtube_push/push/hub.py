"""The local hub: fans committed batches out to this instance's live sessions.

Promises:
- the hub receives batches in seq order, contiguous (the bus subscriber guarantees it) and
  hands each session every batch after the position it was registered at, in order;
- a batch becomes one frame per distinct subscription, encoded once and shared by every
  session with that subscription;
- while a fan-out pass runs, and for a pause after it proportional to its cost, newly
  arrived batches wait and are merged into the next pass: a burst costs one pass, not one
  per batch, and the fan-out takes at most about a third of the event loop, however many
  sessions there are (more sessions -> fewer, larger frames, not a growing queue);
- an epoch change (the log was reset) makes every session resync.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import anyio
import anyio.lowlevel
import structlog

from realtube_push.observability import Metrics
from realtube_push.push import protocol
from realtube_push.push.frames import Batch, Frame, frame_for, merge_batches
from realtube_push.push.protocol import Subscription
from realtube_push.push.session import Backlog, Session

log = structlog.get_logger("realtube.hub")

MAX_PACE_SECONDS = 0.25
PACE_FACTOR = 2.0  # pause after a pass = this x the pass's duration (up to MAX_PACE_SECONDS)
BUSY_FRACTION = 10  # "most sessions busy" = more than one in ten with frames waiting
PASS_CHUNK = 500  # sessions offered a frame between two yields to the event loop


class Hub:
    """Sessions of this instance and the fan-out of batches to them."""

    def __init__(
        self,
        *,
        instance: str,
        max_per_ip: int,
        metrics: Metrics | None = None,
    ) -> None:
        self.instance = instance
        self.metrics = metrics
        self.max_per_ip = max_per_ip
        self.epoch = ""
        self.seq = 0  # last seq fanned out to sessions
        self.accepting = True
        self.sessions: set[Session] = set()
        self._per_ip: Counter[str] = Counter()
        self._inbox: list[Batch] = []
        self._inbox_ready = anyio.Event()
        self._emptied = anyio.Event()
        self.published = 0
        self.passes = 0
        self.backlog = Backlog()

    def reset(self, epoch: str, seq: int) -> None:
        """Start (or restart after an epoch change) at ``(epoch, seq)``."""
        if self.epoch and epoch != self.epoch:
            log.warning("epoch_changed", old=self.epoch, new=epoch)
            for session in list(self.sessions):
                session.resync("epoch")
        self._inbox.clear()
        self.epoch, self.seq = epoch, seq

    def admit(self, client_ip: str) -> bool:
        """Whether another connection from ``client_ip`` fits the per-IP cap (a check only)."""
        return self.accepting and self._per_ip[client_ip] < self.max_per_ip

    def reserve(self, client_ip: str) -> bool:
        """Take one of ``client_ip``'s connection slots at the handshake, if one is free.

        A connection counts from its handshake, not from its session's registration: else a
        burst of handshakes (or WebSockets that never send their hello) all pass ``admit``
        before any registers. Every True must be matched by exactly one ``release``; the
        session is then created with ``slot_reserved`` so it does not count twice.
        """
        if not self.admit(client_ip):
            return False
        self._per_ip[client_ip] += 1
        return True

    def release(self, client_ip: str) -> None:
        """Give back a slot taken by ``reserve``."""
        self._per_ip[client_ip] -= 1
        if self._per_ip[client_ip] <= 0:
            del self._per_ip[client_ip]

    def register(self, session: Session) -> tuple[str, int]:
        """Add a session; returns the position after which the hub will feed it."""
        self.sessions.add(session)
        if not session.slot_reserved:
            self._per_ip[session.client_ip] += 1
        session.backlog = self.backlog
        return self.epoch, self.seq

    def unregister(self, session: Session) -> None:
        """Remove a session (idempotent)."""
        if session in self.sessions:
            self.sessions.discard(session)
            session.detach()
            if not session.slot_reserved:
                self.release(session.client_ip)
            if not self.sessions:
                self._emptied.set()

    def publish(self, batch: Batch) -> None:
        """Accept the next contiguous batch (called by the bus subscriber, in order)."""
        self.published += len(batch.deltas)
        self._inbox.append(batch)
        self._inbox_ready.set()

    def connections_by_transport(self) -> Counter[str]:
        return Counter(s.transport for s in self.sessions)

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
            await self._inbox_ready.wait()
            self._inbox_ready = anyio.Event()
            if not self._inbox:
                continue
            batches, self._inbox = self._inbox, []
            started = time.perf_counter()
            await self.fan_out(merge_batches(batches))
            # let writer tasks (pull mode) run before the next pass, so a burst gets merged
            await anyio.lowlevel.checkpoint()
            await self._pace(time.perf_counter() - started)

    async def _pace(self, pass_seconds: float) -> None:
        """Adaptive batching: hold the next pass so the batches arriving meanwhile leave as
        one shared frame. The pause grows with the pass's cost (``PACE_FACTOR``), and while
        most pull-mode sessions still have frames waiting it lasts until they catch up,
        instead of each busy session conflating its own (an encoding per session); both
        are capped at ``MAX_PACE_SECONDS``."""
        deadline = time.perf_counter() + min(MAX_PACE_SECONDS, PACE_FACTOR * pass_seconds)
        await self.backlog.wait_below(
            max(1, len(self.sessions) // BUSY_FRACTION), at_most=MAX_PACE_SECONDS
        )
        remaining = deadline - time.perf_counter()
        if remaining > 0:
            await anyio.sleep(remaining)

    async def fan_out(self, batch: Batch) -> None:
        """Offer ``batch`` to every session, one shared frame per subscription.

        Sessions in push mode write it to their sockets right here; the pass yields to the
        event loop every ``PASS_CHUNK`` sessions so requests keep being served. A session
        registered meanwhile starts after ``batch`` (its replay covers it), one that left
        ignores the offer.
        """
        if batch.last <= self.seq:
            return
        if batch.first <= self.seq:
            batch = batch.after(self.seq)
        self.seq = batch.last
        sessions = list(self.sessions)
        frames: dict[Subscription, Frame] = {}
        written = deltas = 0
        last: Subscription | None = None
        frame: Frame | None = None
        for start in range(0, len(sessions), PASS_CHUNK):
            if start:
                await anyio.lowlevel.checkpoint()
            for session in sessions[start : start + PASS_CHUNK]:
                subscription = session.subscription
                if subscription is not last or frame is None:
                    # most sessions share one subscription: skip hashing it for each
                    last, frame = subscription, frames.get(subscription)
                    if frame is None:
                        frame = frames[subscription] = frame_for(batch, subscription)
                if session.offer(frame):
                    written += 1
                    deltas += frame.size
        self.passes += 1
        if self.metrics is not None and sessions:
            # counted per pass, not per write: a metric update per socket was 5 % of a pass
            self.metrics.live_frames.inc(written)
            self.metrics.live_delivered.inc(deltas)
            # from publish to the last subscriber's write (or queue, for a slow one)
            self.metrics.live_fanout_lag.observe(max(time.time() - batch.published_at, 0.0))

    async def shutdown(self, *, retry_ms: int, wait_seconds: float) -> None:
        """Tell every session to reconnect elsewhere, then wait (bounded) for them to go."""
        self.accepting = False
        for session in list(self.sessions):
            delay = random.randint(retry_ms // 2, retry_ms) if retry_ms else 0
            session.finish(
                protocol.reconnect(reason="shutdown", retry_after_ms=delay), protocol.CLOSE_RESTART
            )
        if self.sessions:
            self._emptied = anyio.Event()
            with anyio.move_on_after(wait_seconds):
                await self._emptied.wait()
        log.info("live_sessions_closed", remaining=len(self.sessions))
