"""Live clients that survive their instance: thousands of WebSocket connections in one
process, each from a loopback source address, each keeping its cursor across reconnects.

A client reconnects the way docs/protocol.md's state machine says: after a ``reconnect``
notice it waits the notice's ``retryAfterMs``; after HTTP 503 it waits ``Retry-After`` plus
up to a second of its own jitter; after anything else the backoff (0.5 s doubling, full
jitter, reset after a welcome). It resumes with ``hello`` carrying its cursor and checks
that frames are contiguous: a frame starting after ``cursor + 1`` is a hole (deltas
missing), one starting at or before it an overlap (harmless, counted).
"""

from __future__ import annotations

import asyncio
import random
import struct
from dataclasses import dataclass, field

import msgpack

from bench.wsclient import FrameLog, Subscriber

BACKOFF_BASE, BACKOFF_CAP = 0.5, 60.0


@dataclass
class Herd:
    """What all clients share: where to connect, the decoded-frame cache, the phase."""

    host: str
    port: int
    frames: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    stopping: bool = False
    since: float = 0.0  # clients count as live again only after this instant
    live_now: int = 0
    all_live: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    def mark_live(self, client: HerdClient, now: float) -> None:
        if client.live_at is None and now >= self.since:
            client.live_at = now
            self.live_now += 1
            if self.live_now >= self.expected:
                self.all_live.set()

    def restart_count(self, since: float, clients: list[HerdClient]) -> None:
        """From ``since`` on, a client is live again after its next welcome and replay."""
        self.since, self.live_now = since, 0
        self.all_live = asyncio.Event()
        self.expected = len(clients)
        for c in clients:
            c.live_at = None
            c.welcome_seq = None


@dataclass
class HerdClient:
    """One extension: its address and cursor, and what happened to it."""

    address: str
    epoch: str | None = None
    cursor: int | None = None
    welcome_seq: int | None = None
    live_at: float | None = None
    missing: int = 0
    overlaps: int = 0
    resyncs: int = 0
    connects: int = 0
    failed_connects: int = 0
    shed_503: int = 0
    shed_1013: int = 0
    reconnect_notices: int = 0
    max_retry_after: float = 0.0  # s: the longest wait a notice or a 503 asked for
    resumes: dict[str, int] = field(default_factory=dict)
    connection: HerdConnection | None = None

    def hang_up(self) -> None:
        """Close the current connection (the end of a run)."""
        conn = self.connection
        if conn is not None and conn.transport is not None:
            conn.transport.close()


class HerdConnection(Subscriber):
    """One connection of a ``HerdClient``."""

    def __init__(self, herd: Herd, client: HerdClient) -> None:
        hello: dict[str, object] = {"t": "hello", "v": 1}
        if client.cursor is not None:
            hello |= {"epoch": client.epoch, "seq": client.cursor}
        super().__init__(FrameLog(), herd.host, herd.port, "/api/live/ws", hello)
        self.herd, self.client = herd, client
        self.retry_after: float | None = None  # s, from a notice or a 503
        self.welcomed = False
        self.greeted: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_payload(self, payload: bytes, now: float) -> None:
        key = payload[:96] + len(payload).to_bytes(4, "big")
        span = self.herd.frames.get(key)
        if span is None:
            frame = msgpack.unpackb(payload, raw=False)
            kind = frame.get("t")
            if kind == "deltas":
                span = self.herd.frames[key] = (frame["from"], frame["to"])
            else:
                self._control(frame, now)
                return
        c = self.client
        first, last = span
        if c.cursor is not None:
            if first > c.cursor + 1:
                c.missing += first - c.cursor - 1
            elif first <= c.cursor:
                c.overlaps += 1
            c.cursor = max(c.cursor, last)
        if c.welcome_seq is not None and c.cursor is not None and c.cursor >= c.welcome_seq:
            self.herd.mark_live(c, now)

    def _control(self, frame: dict, now: float) -> None:
        c = self.client
        kind = frame.get("t")
        if kind == "welcome":
            self.welcomed = True
            if not self.greeted.done():
                self.greeted.set_result(None)
            c.resumes[frame["resume"]] = c.resumes.get(frame["resume"], 0) + 1
            if c.cursor is None or c.epoch != frame["epoch"]:
                c.cursor = frame["seq"]
            c.epoch, c.welcome_seq = frame["epoch"], frame["seq"]
            if c.cursor >= frame["seq"]:
                self.herd.mark_live(c, now)
        elif kind == "reconnect":
            c.reconnect_notices += 1
            self.retry_after = frame["retryAfterMs"] / 1000
            c.max_retry_after = max(c.max_retry_after, self.retry_after)
        elif kind == "resync":
            c.resyncs += 1
            c.cursor = None  # a real client would full-sync here: its gap is not served

    def on_close_frame(self, code: int) -> None:
        if code == 1013:
            self.client.shed_1013 += 1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"\x88\x82" + b"\0\0\0\0" + struct.pack("!H", code))
            self.transport.close()

    def handshake_refused(self, head: bytes) -> None:
        status = int(head.split(b" ", 2)[1])
        if status == 503:
            self.client.shed_503 += 1
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"retry-after":
                    self.retry_after = float(value.strip()) + random.random()
                    self.client.max_retry_after = max(self.client.max_retry_after, self.retry_after)
        if self.transport is not None:
            self.transport.close()


async def run_client(herd: Herd, client: HerdClient, ramp: asyncio.Semaphore) -> None:
    """Keep ``client`` connected until ``herd.stopping``. The first connection takes a slot
    of ``ramp`` until its welcome (the initial ramp); reconnects do not wait for one."""
    attempt = 0
    first = True
    while not herd.stopping:
        conn = HerdConnection(herd, client)
        if first:
            async with ramp:
                await _connect(herd, client, conn)
            first = False
        else:
            await _connect(herd, client, conn)
        if conn.transport is not None:
            await conn.closed
        if herd.stopping:
            return
        if conn.welcomed:
            attempt = 0
        if conn.retry_after is not None:
            delay = conn.retry_after
        else:
            delay = random.random() * min(BACKOFF_CAP, BACKOFF_BASE * 2.0**attempt)
            attempt += 1
        await asyncio.sleep(delay)


async def _connect(herd: Herd, client: HerdClient, conn: HerdConnection) -> None:
    """Connect; return once welcomed or closed (or not connected at all)."""
    loop = asyncio.get_running_loop()
    client.connects += 1
    client.connection = conn
    try:
        await loop.create_connection(
            lambda: conn, herd.host, herd.port, local_addr=(client.address, 0)
        )
    except OSError:
        client.failed_connects += 1
        return
    await asyncio.wait({conn.closed, conn.greeted}, return_when=asyncio.FIRST_COMPLETED)
