"""The client state machine (docs/protocol.md, section 7): which transport, when, after what.

``StateMachine.run`` loops: full sync if the cache has no cursor; one session of the current
transport; then, by how the session ended (``session.Ending``):

- ``resync``: wait the frame's ``retryAfterMs`` (and a backoff when resyncs follow each
  other), full sync, reconnect;
- ``reconnect``: next instance, wait ``retryAfterMs`` (``reconnect_delay`` without a notice),
  same transport;
- ``shed``: next instance, wait the server's delay (the backoff without one), same
  transport: an overloaded server is no reason to fall back;
- ``lost``/``fatal``: next instance; the same transport after the backoff (exponential, full
  jitter, reset by a connection that worked) or the server's ``Retry-After``, unless the
  ``Ladder`` moves to another transport (tried at once): after ``fallback_after`` attempts
  that never connected, at once for ``fatal``, back down after a failed upgrade probe;
- while on a worse transport, the best one is probed every ``upgrade_interval``.

Every wait before another attempt is announced (``Observer.retrying``) with its delay and
reason. The machine is also the ``SessionHost`` of the sessions it runs: it owns the cache
and applies what they receive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Literal

import anyio
import httpx

from realtube_push.client.backoff import Backoff
from realtube_push.client.cache import LocalCache, ResyncRequired
from realtube_push.client.ladder import Ladder
from realtube_push.client.observe import CallbackFailed, Observer, Retry
from realtube_push.client.options import LiveOptions, Transport
from realtube_push.client.rest import fetch_full
from realtube_push.client.session import Ending, ending_of, find
from realtube_push.client.transports import LiveTransport, for_name

log = logging.getLogger("realtube_push.client")


class StateMachine:
    """Runs sessions of the configured transports for one ``LiveClient``."""

    def __init__(
        self, urls: list[str], options: LiveOptions, cache: LocalCache, observer: Observer
    ) -> None:
        self.urls = urls
        self._options = options
        self._cache = cache
        self._observer = observer
        self._transports: list[LiveTransport] = [for_name(t) for t in options.transports]
        self._ladder = Ladder(
            rungs=len(self._transports),
            fallback_after=options.fallback_after,
            upgrade_interval=options.upgrade_interval,
        )
        self._backoff = Backoff(base=options.backoff_base, cap=options.backoff_cap)
        self._http: httpx.AsyncClient | None = None
        self._url_index = 0
        self._heartbeat = options.heartbeat
        self._etag: str | None = None
        # A cache handed in already holds a synced state: the 24-hour full-sync clock
        # (polling) starts now, and its cursor is tried before any full sync.
        self._last_full: float | None = time.monotonic() if cache.cursor is not None else None
        self._resync_streak = 0
        self._session_connected = False

    # -- SessionHost ----------------------------------------------------------------------------

    @property
    def http(self) -> httpx.AsyncClient:
        """The HTTP client of the running ``run()``."""
        assert self._http is not None, "only while running"
        return self._http

    @property
    def url(self) -> str:
        """The instance in use."""
        return self.urls[self._url_index]

    @property
    def cache(self) -> LocalCache:
        """The cache the sessions fill."""
        return self._cache

    @property
    def options(self) -> LiveOptions:
        """The client's options."""
        return self._options

    @property
    def heartbeat(self) -> float:
        """The server's heartbeat as last announced."""
        return self._heartbeat

    async def welcomed(self, welcome: Mapping[str, Any], transport: Transport) -> float:
        """Check and record a welcome; returns the heartbeat to expect."""
        cursor = self._cache.cursor
        if cursor is not None and welcome.get("epoch") != cursor.epoch:
            raise ResyncRequired("epoch", "the welcome names another epoch")
        beat = welcome.get("heartbeat")
        if isinstance(beat, int | float) and not isinstance(beat, bool) and beat > 0:
            self._heartbeat = float(beat)
        await self._connected(resume=welcome.get("resume"), instance=welcome.get("instance"))
        log.info("connected transport=%s resume=%s", transport, welcome.get("resume"))
        return self._heartbeat

    async def apply_frame(
        self, frame: Mapping[str, Any], *, resuming: bool, source: Transport
    ) -> None:
        """Apply a ``deltas`` frame to the cache and report it."""
        changes = self._cache.apply_deltas_frame(frame, resuming=resuming)
        self._resync_streak = 0
        await self._observer.applied(source, changes)

    async def apply_page(self, page: Mapping[str, Any], *, after: int) -> None:
        """Apply a delta page to the cache and report it."""
        changes = self._cache.apply_delta_page(page, after=after)
        self._resync_streak = 0
        await self._observer.applied("poll", changes)

    async def heartbeat_received(self) -> None:
        """Count a server heartbeat."""
        await self._observer.count("heartbeats")

    async def polled(self) -> None:
        """A poll worked: connected, without a welcome."""
        await self._connected(resume=None, instance=None)

    def full_sync_due(self) -> bool:
        """Whether ``full_sync_interval`` has passed since the last full sync."""
        return (
            self._last_full is None
            or time.monotonic() - self._last_full >= self._options.full_sync_interval
        )

    async def full_sync(self, *, conditional: bool) -> None:
        """``GET /api/sync/full`` into the cache; a 304 (``conditional``) changes nothing."""
        got = await fetch_full(
            self.http,
            self.url,
            self._options.request_headers(),
            etag=self._etag if conditional else None,
            connect_timeout=self._options.connect_timeout,
        )
        self._last_full = time.monotonic()
        if got is None:
            return
        changes = self._cache.apply_full(got.doc)
        self._etag = got.etag
        await self._observer.count("full_syncs")
        await self._observer.applied("full", changes)

    # -- the loop -------------------------------------------------------------------------------

    async def run(self, http: httpx.AsyncClient) -> None:
        """Follow the live channel with ``http`` until cancelled (or a callback raises)."""
        self._http = http
        try:
            await self._loop()
        finally:
            self._http = None

    async def _loop(self) -> None:
        names = self._options.transports
        ladder = self._ladder
        while True:
            if self._cache.cursor is None:
                await self._full_sync_until_done()
            now = anyio.current_time()
            ladder.probe_if_due(now)
            transport = self._transports[ladder.level]
            with anyio.move_on_after(ladder.time_to_probe(now)) as timer:
                end = await self._session(transport)
            if timer.cancelled_caught:
                await self._observer.set_status(connected=False, error="trying a better transport")
                continue
            connected = self._session_connected
            await self._observer.set_status(
                connected=False, error=None if end.kind == "resync" else end.detail
            )
            log.info(
                "session_end transport=%s kind=%s detail=%s", transport.name, end.kind, end.detail
            )
            if connected:
                ladder.connected()
            if end.kind == "resync":
                await self._resync(end)  # backs off if it keeps happening
                continue
            self._resync_streak = 0
            if connected:
                self._backoff.reset()
            self._rotate()
            if ladder.after(end.kind, connected=connected, now=anyio.current_time()):
                await self._wait(0.0, names[ladder.level], end.detail)
            elif end.kind == "reconnect":
                delay = self._options.reconnect_delay if end.delay is None else end.delay
                await self._wait(delay, transport.name, end.detail)
            else:
                await self._wait(self._server_delay(end), transport.name, end.detail)

    async def _session(self, transport: LiveTransport) -> Ending:
        self._session_connected = False
        await self._observer.set_status(transport=transport.name, connected=False, url=self.url)
        try:
            return await transport.session(self)
        except Exception as exc:  # network trouble of any shape, possibly grouped
            failed = find(exc, CallbackFailed)
            if failed is not None:
                raise failed from None
            log.debug("session_failed", exc_info=True)
            return ending_of(exc)

    async def _connected(self, **fields: Any) -> None:
        self._session_connected = True
        status = self._observer.status
        await self._observer.set_status(
            connected=True, error=None, connections=status.connections + 1, **fields
        )

    def _rotate(self) -> None:
        self._url_index = (self._url_index + 1) % len(self.urls)

    def _server_delay(self, end: Ending) -> float:
        """The wait the server asked for (a ``Retry-After`` gets up to ``retry_after_jitter``
        more, so a refused herd does not come back in step), else the next backoff."""
        if end.delay is None:
            return self._backoff.next()
        if end.coarse:
            return end.delay + self._backoff.rand() * self._options.retry_after_jitter
        return end.delay

    async def _wait(
        self, delay: float, following: Transport | Literal["full_sync"], why: str
    ) -> None:
        """Announce the next attempt, then wait for it."""
        log.info("retry next=%s delay=%.3f url=%s reason=%s", following, delay, self.url, why)
        await self._observer.retrying(Retry(delay=delay, next=following, url=self.url, reason=why))
        await anyio.sleep(delay)

    # -- full sync ------------------------------------------------------------------------------

    async def _resync(self, end: Ending) -> None:
        self._resync_streak += 1
        status = self._observer.status
        await self._observer.set_status(
            resyncs=status.resyncs + 1, last_resync_reason=end.detail or "resync"
        )
        delay = end.delay or 0.0  # the server spreads a stampede after an epoch change
        if self._resync_streak > 1:
            # Resync right after a resync: the full document is behind the log (it is rebuilt
            # periodically) or the server is confused; do not hammer it.
            delay = max(delay, self._backoff.next())
        await self._wait(delay, "full_sync", f"resync: {end.detail}")
        await self._full_sync_until_done()

    async def _full_sync_until_done(self) -> None:
        """Full sync, retrying with backoff (and across instances) until it succeeds."""
        while True:
            try:
                await self.full_sync(conditional=False)
                return
            except Exception as exc:
                failed = find(exc, CallbackFailed)
                if failed is not None:
                    raise failed from None
                end = ending_of(exc)
                await self._observer.set_status(connected=False, error=f"full sync: {end.detail}")
                self._rotate()
                await self._wait(self._server_delay(end), "full_sync", end.detail)
