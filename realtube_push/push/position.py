"""Where the sync log stands, as the live handshake needs it, without a query per connection.

A herd of resuming clients used to cost one ``SELECT ... FROM sync_meta`` each. The handshake
needs two facts from the log, and neither needs a read of its own:

- the pruning mark (``pruned_through``) only grows, every ``PRUNE_INTERVAL_SECONDS``: a copy a
  few seconds old is safe. A cursor it wrongly lets through is at most a cursor whose deltas
  were just pruned, and the replay then finds them missing and answers ``resync`` anyway.
- the head (``last_seq``) matters only for a cursor ahead of this instance's hub: the bus
  here may lag the log by a message, and the log then decides between "live" and "ahead".
  That read must have started after the client's cursor was committed, i.e. after the call;
  every handshake waiting meanwhile shares the next one (``fresh``).
"""

from __future__ import annotations

import time

import anyio
import asyncpg

from realtube_push.observability import Metrics
from realtube_push.store import synclog
from realtube_push.store.synclog import SyncPosition


class LogPosition:
    """The log's position, read for many callers at once."""

    def __init__(self, pool: asyncpg.Pool, metrics: Metrics) -> None:
        self._pool = pool
        self._metrics = metrics
        self._lock = anyio.Lock()
        self._value: SyncPosition | None = None
        self._read_at = float("-inf")  # when the read that gave ``_value`` started
        self._read_in: str | None = None  # the caller's epoch then (``recent``)

    async def fresh(self) -> SyncPosition:
        """A position read that started after this call (callers waiting meanwhile share it)."""
        called = time.monotonic()
        async with self._lock:
            if self._value is not None and self._read_at >= called:
                return self._value
            return await self._read(None)

    async def recent(self, max_age: float, epoch: str) -> SyncPosition:
        """The position as of at most ``max_age`` seconds ago, read while the caller was
        already in ``epoch`` (the hub's): after the hub changed epoch, a position read
        before would answer for the old log."""
        value = self._kept(max_age, epoch)
        if value is not None:
            return value
        async with self._lock:
            return self._kept(max_age, epoch) or await self._read(epoch)

    def _kept(self, max_age: float, epoch: str) -> SyncPosition | None:
        value = self._value
        if value is None or time.monotonic() - self._read_at >= max_age:
            return None
        # of the caller's epoch, or read since the caller was in it (the log, not the hub,
        # moved on: one read says so to every handshake, not one read each)
        return value if epoch in (value.epoch, self._read_in) else None

    async def _read(self, epoch: str | None) -> SyncPosition:
        started = time.monotonic()
        self._metrics.live_position_reads.inc()
        value = await synclog.position(self._pool)
        self._value, self._read_at, self._read_in = value, started, epoch
        return value
