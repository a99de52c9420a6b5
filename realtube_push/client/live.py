"""``LiveClient``: keeps a ``LocalCache`` in step with the server over WebSocket, SSE or polling.

Written on AnyIO, httpx and httpx-ws only, so it runs under asyncio and trio alike; every task
it starts belongs to a task group inside ``run()`` and ends with it.

Promises:

- the cache is always exactly the server's dataset as of its cursor: each applied frame or
  page starts right after the cursor (checked by ``LocalCache``); anything else (a hole,
  another epoch, a server ``resync``) leads to a full sync from ``GET /api/sync/full`` and a
  reconnect from *its* cursor, never to a silently incomplete cache. (The full document is
  rebuilt periodically, so its cursor may be behind the live stream: following on from it
  replays the difference, which is why a full sync is always followed by deltas.)
- transports are tried in the order given (default WebSocket, then SSE, then polling). A
  transport that fails ``fallback_after`` connection attempts in a row, or answers with a
  protocol error, gives way to the next one; while on a worse transport the best one is
  tried again every ``upgrade_interval`` seconds;
- a ``reconnect`` notice (or WebSocket close 1012) is obeyed after its ``retryAfterMs``, on
  the next instance of ``base_url`` when several are given, resuming from the cursor; any
  other loss reconnects after an exponential backoff with full jitter (``Backoff``);
- heartbeats: server ``ping`` frames are answered, the client sends its own ``ping`` every
  heartbeat, and a connection silent for 2.5 heartbeats is treated as dead;
- observers never poll: ``on_change``/``on_applied``/``on_status`` are called from the
  client's task as things happen, and ``wait_for_cursor``/``wait_until`` wake on an
  ``anyio.Event`` that is set on every change of cache or status.

Callbacks run inside the client's task: they must not block, and an exception they raise
ends ``run()`` (it is a bug of the caller, not a network condition to retry).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

import anyio
import httpx
import orjson
import wsproto.events
import wsproto.utilities
from httpx_ws import (
    AsyncWebSocketSession,
    HTTPXWSException,
    WebSocketDisconnect,
    WebSocketUpgradeError,
    aconnect_ws,
)

from realtube_push.client import wire
from realtube_push.client.backoff import Backoff
from realtube_push.client.cache import Change, Cursor, LocalCache, ResyncRequired

log = logging.getLogger("realtube_push.client")

Transport = Literal["ws", "sse", "poll"]
TRANSPORTS: tuple[Transport, ...] = ("ws", "sse", "poll")

ChangeCallback = Callable[[str, str, "dict[str, Any] | None"], Any]
AppliedCallback = Callable[[str, Sequence[Change]], Any]
StatusCallback = Callable[["Status"], Any]
E = TypeVar("E", bound=BaseException)


@dataclass(frozen=True, slots=True)
class Status:
    """What the client is doing right now (a snapshot; ``LiveClient.status`` makes a new one).

    ``transport`` is the transport in use or being tried (None before ``run()`` and after
    it); ``connected`` is true from a ``welcome`` (or a successful poll) until the connection
    ends; ``resume`` is the last welcome's ``resume`` (``"replay"``, ``"live"``, ``"fresh"``);
    ``heartbeats`` counts server pings received (WebSocket ``ping`` frames, each answered
    with ``pong``, and SSE ``: ping`` comments); ``connections`` counts welcomes.
    """

    transport: Transport | None = None
    connected: bool = False
    cursor: Cursor | None = None
    url: str | None = None
    resume: str | None = None
    instance: str | None = None
    error: str | None = None
    full_syncs: int = 0
    heartbeats: int = 0
    resyncs: int = 0
    last_resync_reason: str | None = None
    connections: int = 0


@dataclass(frozen=True, slots=True)
class _End:
    """How one session ended, and what the loop should do next.

    ``kind``: ``resync`` (full sync, then reconnect), ``reconnect`` (wait ``delay``, then the
    next instance), ``lost`` (backoff, reconnect), ``fatal`` (this transport cannot work with
    this server: fall back to the next one).
    """

    kind: Literal["resync", "reconnect", "lost", "fatal"]
    detail: str
    connected: bool
    delay: float | None = None


class _CallbackFailed(Exception):
    """Wraps an exception raised by a user callback so no network handler swallows it."""

    def __init__(self, original: Exception) -> None:
        super().__init__(repr(original))
        self.original = original


class _Refused(Exception):
    """An HTTP answer that is not the one expected (status, and Retry-After if any)."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After", "")
    try:
        return max(float(raw), 0.0) if raw else None
    except ValueError:
        return None


class LiveClient:
    """A live-updated cache of the synced dataset (see the module docstring for promises).

    ``base_url`` is one server, or several instances of the same service: the client starts
    on the first and moves to the next after each lost connection or ``reconnect`` notice.
    ``buckets``/``channels`` choose the subscription; a ``cache`` given (say, restored from
    storage) carries its own subscription and cursor, which is resumed from (``buckets``, if
    also given, must match it).
    ``transports`` lists the transports to use, best first. ``poll_interval`` and
    ``full_sync_interval`` pace polling (docs/protocol.md: 30 min and 24 h). ``http_client`` is used
    for every request when given (else the client owns one for the duration of ``run()``).
    ``user_id`` is sent as ``X-User-ID`` (the sync endpoints' rate limits are per user);
    ``headers`` go on every request. ``json_frames`` asks for the JSON WebSocket subprotocol
    (debugging). ``backoff``, ``fallback_after``, ``upgrade_interval``, ``connect_timeout``,
    ``heartbeat`` (assumed until a welcome says it), ``ping_interval`` (default: the
    heartbeat) and ``reconnect_delay`` (a close 1012 without a notice) tune the state machine.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        buckets: Iterable[str] | None = None,
        channels: bool = True,
        transports: Sequence[Transport] = TRANSPORTS,
        poll_interval: float = 1800.0,
        http_client: httpx.AsyncClient | None = None,
        on_change: ChangeCallback | None = None,
        on_applied: AppliedCallback | None = None,
        on_status: StatusCallback | None = None,
        cache: LocalCache | None = None,
        user_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        json_frames: bool = False,
        backoff: Backoff | None = None,
        fallback_after: int = 2,
        upgrade_interval: float = 300.0,
        full_sync_interval: float = 86_400.0,
        connect_timeout: float = 10.0,
        heartbeat: float = 20.0,
        ping_interval: float | None = None,
        reconnect_delay: float = 1.0,
    ) -> None:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("base_url needs at least one URL")
        self.urls = [u.rstrip("/") for u in urls]
        if not transports or any(t not in TRANSPORTS for t in transports):
            raise ValueError(f"transports must be a non-empty sequence of {TRANSPORTS}")
        if cache is None:
            cache = LocalCache(buckets=buckets, channels=channels)
        elif buckets is not None and wire.normalize_buckets(buckets) != cache.buckets:
            raise ValueError("buckets differ from the given cache's buckets")
        self.cache = cache
        self.transports: tuple[Transport, ...] = tuple(dict.fromkeys(transports))
        self.poll_interval = poll_interval
        self.on_change = on_change
        self.on_applied = on_applied
        self.on_status = on_status
        self.user_id = user_id
        self.json_frames = json_frames
        self.backoff = backoff or Backoff()
        self.fallback_after = max(1, fallback_after)
        self.upgrade_interval = upgrade_interval
        self.full_sync_interval = full_sync_interval
        self.connect_timeout = connect_timeout
        self.heartbeat = heartbeat
        self.ping_interval = ping_interval
        self.reconnect_delay = reconnect_delay
        self._given_http = http_client
        self._http: httpx.AsyncClient | None = None
        self._headers = dict(headers or {})
        if user_id:
            self._headers.setdefault("X-User-ID", user_id)
        self._url_index = 0
        self._status = Status(url=self.urls[0])
        self._progress = anyio.Event()
        self._etag: str | None = None
        # A cache handed in already holds a synced state: the 24-hour full-sync clock
        # (polling) starts now, and its cursor is tried before any full sync.
        self._last_full: float | None = time.monotonic() if cache.cursor is not None else None
        self._resync_streak = 0
        self._running = False

    # -- observation --------------------------------------------------------------------------

    @property
    def status(self) -> Status:
        """The current status, with the cache's cursor."""
        return replace(self._status, cursor=self.cache.cursor)

    @property
    def url(self) -> str:
        """The instance in use."""
        return self.urls[self._url_index]

    async def wait_until(self, predicate: Callable[[LiveClient], bool]) -> None:
        """Return once ``predicate(self)`` holds; re-checked on every change, never polled.

        Wrap in ``anyio.fail_after`` for a deadline.
        """
        while not predicate(self):
            await self._progress.wait()

    async def wait_for_cursor(self, seq: int, *, epoch: str | None = None) -> Cursor:
        """Return the cursor once it reaches ``seq`` (in ``epoch``, if given)."""

        def reached(client: LiveClient) -> bool:
            cursor = client.cache.cursor
            return (
                cursor is not None
                and cursor.seq >= seq
                and (epoch is None or cursor.epoch == epoch)
            )

        await self.wait_until(reached)
        assert self.cache.cursor is not None
        return self.cache.cursor

    async def wait_for_status(self, predicate: Callable[[Status], bool]) -> Status:
        """Return the status once ``predicate`` holds for it."""
        await self.wait_until(lambda client: predicate(client.status))
        return self.status

    def _notify(self) -> None:
        self._progress.set()
        self._progress = anyio.Event()

    async def _call(self, callback: Callable[..., Any] | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            raise _CallbackFailed(exc) from exc

    async def _set_status(self, **fields: Any) -> None:
        old = self._status
        new = replace(old, **fields)
        self._status = new
        if new != old:
            self._notify()
            watched = ("transport", "connected", "url", "error", "resume")
            if any(getattr(old, f) != getattr(new, f) for f in watched):
                await self._call(self.on_status, self.status)

    async def _applied(self, source: str, changes: Sequence[Change]) -> None:
        for change in changes:
            await self._call(self.on_change, change.kind, change.id, change.item)
        await self._call(self.on_applied, source, changes)
        self._notify()

    # -- the main loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the live channel until cancelled (full syncs and reconnects included).

        One ``run()`` at a time per client; it returns only by cancellation or by raising
        what a callback raised.
        """
        if self._running:
            raise RuntimeError("this LiveClient is already running")
        self._running = True
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self._given_http is None:
                    self._http = await stack.enter_async_context(
                        httpx.AsyncClient(timeout=httpx.Timeout(self.connect_timeout))
                    )
                else:
                    self._http = self._given_http
                await self._loop()
        except _CallbackFailed as exc:
            raise exc.original from None
        finally:
            self._running = False
            self._status = replace(self._status, transport=None, connected=False)
            self._notify()

    async def _loop(self) -> None:
        level = 0  # index into self.transports
        failures = 0  # consecutive attempts on this level that never connected
        probe_from: int | None = None  # the level to return to if an upgrade probe fails
        upgrade_at = math.inf  # when to try the best transport again (while on a worse one)
        while True:
            if self.cache.cursor is None:
                await self._full_sync_until_done(conditional=False)
            now = anyio.current_time()
            if level > 0 and now >= upgrade_at:
                probe_from, level, failures = level, 0, 0
                upgrade_at = now + self.upgrade_interval
            transport = self.transports[level]
            with anyio.move_on_after(upgrade_at - now if level > 0 else math.inf) as timer:
                end = await self._session(transport)
            if timer.cancelled_caught:
                await self._set_status(connected=False, error="trying a better transport")
                continue
            await self._set_status(
                connected=False, error=None if end.kind == "resync" else end.detail
            )
            log.info("session_end transport=%s kind=%s detail=%s", transport, end.kind, end.detail)
            if end.connected:
                failures, probe_from = 0, None
            if end.kind == "resync":
                await self._resync(end.detail)  # backs off if it keeps happening
                continue
            self._resync_streak = 0
            if end.connected:
                self.backoff.reset()
            self._rotate()
            if end.kind == "reconnect":
                await anyio.sleep(self.reconnect_delay if end.delay is None else end.delay)
                continue
            if not end.connected and probe_from is not None:
                level, failures = level + 1, 0  # the probe failed: walk back down, no waiting
                if level >= probe_from:
                    level, probe_from = probe_from, None
                continue
            failures += 0 if end.connected else 1
            if level < len(self.transports) - 1 and (
                end.kind == "fatal" or failures >= self.fallback_after
            ):
                if level == 0:
                    upgrade_at = anyio.current_time() + self.upgrade_interval
                level, failures = level + 1, 0
                continue
            delay = self.backoff.next()
            if end.delay is not None:
                delay = max(delay, end.delay)
            await anyio.sleep(delay)

    def _rotate(self) -> None:
        self._url_index = (self._url_index + 1) % len(self.urls)

    async def _resync(self, reason: str) -> None:
        self._resync_streak += 1
        await self._set_status(
            resyncs=self._status.resyncs + 1, last_resync_reason=reason or "resync"
        )
        if self._resync_streak > 1:
            # Resync right after a resync: the full document is behind the log (it is rebuilt
            # periodically) or the server is confused; do not hammer it.
            await anyio.sleep(self.backoff.next())
        await self._full_sync_until_done(conditional=False)

    async def _session(self, transport: Transport) -> _End:
        await self._set_status(transport=transport, connected=False, url=self.url)
        try:
            if transport == "ws":
                return await self._ws_session()
            if transport == "sse":
                return await self._sse_session()
            return await self._poll_session()
        except Exception as exc:  # network trouble of any shape, possibly grouped
            failed = _find(exc, _CallbackFailed)
            if failed is not None:
                raise failed from None
            resync = _find(exc, ResyncRequired)
            if resync is not None:
                return _End("resync", resync.reason, self._status.connected)
            refused = _find(exc, _Refused)
            if refused is not None:
                kind: Literal["fatal", "lost"] = (
                    "fatal" if refused.status in (400, 401, 403, 404) else "lost"
                )
                return _End(kind, str(refused), False, refused.retry_after)
            log.debug("session_failed", exc_info=True)
            return _End("lost", _describe(exc), self._status.connected)

    async def _heartbeat(self) -> None:
        await self._set_status(heartbeats=self._status.heartbeats + 1)

    async def _connected(self, **fields: Any) -> None:
        await self._set_status(
            connected=True, error=None, connections=self._status.connections + 1, **fields
        )

    # -- full sync ------------------------------------------------------------------------------

    async def _full_sync_until_done(self, *, conditional: bool) -> None:
        """Full sync, retrying with backoff (and across instances) until it succeeds."""
        while True:
            try:
                await self._full_sync(conditional=conditional)
                return
            except Exception as exc:
                failed = _find(exc, _CallbackFailed)
                if failed is not None:
                    raise failed from None
                refused = _find(exc, _Refused)
                await self._set_status(connected=False, error=f"full sync: {_describe(exc)}")
                self._rotate()
                delay = self.backoff.next()
                if refused is not None and refused.retry_after is not None:
                    delay = max(delay, refused.retry_after)
                await anyio.sleep(delay)

    async def _full_sync(self, *, conditional: bool) -> bool:
        """``GET /api/sync/full`` (MessagePack, gzip); returns False on 304 Not Modified."""
        assert self._http is not None
        headers = {**self._headers, "Accept": wire.MSGPACK_MIME, "Accept-Encoding": "gzip"}
        if conditional and self._etag is not None:
            headers["If-None-Match"] = self._etag
        response = await self._http.get(
            self.url + wire.FULL_PATH,
            headers=headers,
            timeout=httpx.Timeout(self.connect_timeout, read=max(self.connect_timeout, 60.0)),
        )
        if response.status_code == 304:
            self._last_full = time.monotonic()
            return False
        if response.status_code != 200:
            raise _Refused(response.status_code, _retry_after(response))
        doc = wire.decode_body(response.content, response.headers.get("Content-Type", ""))
        if not isinstance(doc, dict):
            raise ResyncRequired("malformed", "full document is not a map")
        changes = self.cache.apply_full(doc)
        self._etag = response.headers.get("ETag")
        self._last_full = time.monotonic()
        await self._set_status(full_syncs=self._status.full_syncs + 1)
        await self._applied("full", changes)
        return True

    # -- WebSocket ------------------------------------------------------------------------------

    async def _ws_session(self) -> _End:
        assert self._http is not None
        assert self.cache.cursor is not None
        cursor = self.cache.cursor
        subprotocol = wire.JSON_SUBPROTOCOL if self.json_frames else wire.MSGPACK_SUBPROTOCOL
        ws: AsyncWebSocketSession
        try:
            async with aconnect_ws(
                self.url + wire.WS_PATH,
                self._http,
                subprotocols=[subprotocol],
                keepalive_ping_interval_seconds=None,  # the protocol's own pings do this job
                max_message_size_bytes=1 << 20,
                headers=dict(self._headers),
                timeout=httpx.Timeout(self.connect_timeout),
            ) as ws:
                return await self._ws_stream(ws, cursor)
        except WebSocketUpgradeError as exc:
            raise _Refused(exc.response.status_code, _retry_after(exc.response)) from exc

    async def _ws_stream(self, ws: AsyncWebSocketSession, cursor: Cursor) -> _End:
        binary = ws.subprotocol != wire.JSON_SUBPROTOCOL

        async def send(frame: dict[str, Any]) -> None:
            data = wire.encode(frame, binary=binary)
            if isinstance(data, bytes):
                await ws.send_bytes(data)
            else:
                await ws.send_text(data)

        await send(
            wire.hello(
                epoch=cursor.epoch,
                seq=cursor.seq,
                buckets=self.cache.buckets,
                channels=self.cache.with_channels,
            )
        )
        first = await _ws_next(ws, self.connect_timeout, connected=False)
        if isinstance(first, _End):
            return first
        if first["t"] != "welcome":
            return self._control_end(first, connected=False)
        heartbeat = await self._welcomed(first, "ws")
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._ws_pinger, send, self.ping_interval or heartbeat)
            end = await self._ws_read(ws, send, heartbeat)
            tg.cancel_scope.cancel()
        return end

    async def _welcomed(self, welcome: Mapping[str, Any], transport: Transport) -> float:
        """Check and record a welcome; returns the heartbeat to expect."""
        cursor = self.cache.cursor
        if cursor is not None and welcome.get("epoch") != cursor.epoch:
            raise ResyncRequired("epoch", "the welcome names another epoch")
        beat = welcome.get("heartbeat")
        if isinstance(beat, int | float) and not isinstance(beat, bool) and beat > 0:
            self.heartbeat = float(beat)
        await self._connected(resume=welcome.get("resume"), instance=welcome.get("instance"))
        log.info("connected transport=%s resume=%s", transport, welcome.get("resume"))
        return self.heartbeat

    async def _ws_read(
        self,
        ws: AsyncWebSocketSession,
        send: Callable[[dict[str, Any]], Awaitable[None]],
        heartbeat: float,
    ) -> _End:
        resuming = True
        while True:
            frame = await _ws_next(ws, 2.5 * heartbeat, connected=True)
            if isinstance(frame, _End):
                return frame
            kind = frame["t"]
            if kind == "deltas":
                changes = self.cache.apply_deltas_frame(frame, resuming=resuming)
                resuming = False
                self._resync_streak = 0
                await self._applied("ws", changes)
            elif kind == "ping":
                await send(wire.pong(frame.get("id")))
                await self._heartbeat()
            elif kind in ("pong", "welcome"):
                continue
            elif kind in ("resync", "reconnect", "error"):
                return self._control_end(frame, connected=True)
            # unknown server frame types are ignored: newer servers may add some

    async def _ws_pinger(
        self, send: Callable[[dict[str, Any]], Awaitable[None]], interval: float
    ) -> None:
        n = 0
        while True:
            await anyio.sleep(interval)
            n += 1
            try:
                await send(wire.ping(n))
            except (HTTPXWSException, wsproto.utilities.LocalProtocolError):
                return  # the connection is closing: the reader reports how it ended

    def _control_end(self, frame: Mapping[str, Any], *, connected: bool) -> _End:
        """The end a ``resync``/``reconnect``/``error`` (or unexpected first) frame means."""
        kind = frame.get("t")
        if kind == "resync":
            return _End("resync", str(frame.get("reason") or "resync"), connected)
        if kind == "reconnect":
            ms = frame.get("retryAfterMs")
            delay = ms / 1000 if isinstance(ms, int | float) and ms >= 0 else None
            return _End("reconnect", str(frame.get("reason") or "reconnect"), connected, delay)
        if kind == "error":
            code = str(frame.get("code"))
            fatal = code in wire.FATAL_ERROR_CODES
            return _End("fatal" if fatal else "lost", f"{code}: {frame.get('message')}", connected)
        return _End("lost", f"unexpected {kind!r} frame", connected)

    # -- Server-Sent Events ---------------------------------------------------------------------

    async def _sse_session(self) -> _End:
        assert self._http is not None
        assert self.cache.cursor is not None
        cursor = self.cache.cursor
        params: dict[str, str] = {
            "epoch": cursor.epoch,
            "seq": str(cursor.seq),
            "channels": "1" if self.cache.with_channels else "0",
        }
        if self.cache.buckets is not None:
            params["buckets"] = ",".join(self.cache.buckets)
        headers = {
            **self._headers,
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
            "Last-Event-ID": str(cursor.seq),
        }
        # No byte for 2.5 heartbeats (the server sends ": ping" every heartbeat) = dead.
        timeout = httpx.Timeout(self.connect_timeout, read=2.5 * self.heartbeat)
        async with self._http.stream(
            "GET", self.url + wire.SSE_PATH, params=params, headers=headers, timeout=timeout
        ) as response:
            if response.status_code != 200:
                await response.aread()
                raise _Refused(response.status_code, _retry_after(response))
            return await self._sse_read(_sse_events(response))

    async def _sse_read(self, events: AsyncIterator[wire.SSEEvent]) -> _End:
        resuming = True
        connected = False
        async for event in events:
            if event.comment == "ping":
                await self._heartbeat()
            if event.comment is not None or not event.data:
                continue  # a comment, or a retry-only block
            try:
                frame = orjson.loads(event.data)
            except orjson.JSONDecodeError as exc:
                raise wire.WireError("SSE data is not JSON") from exc
            kind = frame.get("t") if isinstance(frame, dict) else None
            if kind == "welcome" and not connected:
                await self._welcomed(frame, "sse")
                connected = True
            elif kind == "deltas" and connected:
                changes = self.cache.apply_deltas_frame(frame, resuming=resuming)
                resuming = False
                self._resync_streak = 0
                await self._applied("sse", changes)
            elif kind in ("resync", "reconnect", "error"):
                return self._control_end(frame, connected=connected)
        return _End("lost", "the event stream ended", connected)

    # -- polling --------------------------------------------------------------------------------

    async def _poll_session(self) -> _End:
        connected = False
        while True:
            due = self._last_full is None or (
                time.monotonic() - self._last_full >= self.full_sync_interval
            )
            if due:
                await self._full_sync(conditional=True)
            await self._poll_once()
            if not connected:
                connected = True
                await self._connected(resume=None, instance=None)
            await anyio.sleep(self.poll_interval)

    async def _poll_once(self) -> None:
        """``GET /api/sync/delta?cursor=&epoch=``, following ``hasMore`` to the end."""
        assert self._http is not None
        while True:
            cursor = self.cache.cursor
            assert cursor is not None
            response = await self._http.get(
                self.url + wire.DELTA_PATH,
                params={"cursor": str(cursor.seq), "epoch": cursor.epoch},
                headers={**self._headers, "Accept": wire.MSGPACK_MIME},
            )
            if response.status_code != 200:
                raise _Refused(response.status_code, _retry_after(response))
            body = wire.decode_body(response.content, response.headers.get("Content-Type", ""))
            if not isinstance(body, dict):
                raise ResyncRequired("malformed", "delta page is not a map")
            changes = self.cache.apply_delta_page(body, after=cursor.seq)
            self._resync_streak = 0
            await self._applied("poll", changes)
            if not body.get("hasMore"):
                return


async def _ws_next(
    ws: AsyncWebSocketSession, within: float, *, connected: bool
) -> dict[str, Any] | _End:
    """The next protocol frame; or how the connection ended: closed by the server (its close
    code decides what next) or silent for ``within`` seconds (dead)."""
    with anyio.move_on_after(within):
        try:
            while True:
                event = await ws.receive()
                if isinstance(event, wsproto.events.BytesMessage | wsproto.events.TextMessage):
                    return wire.decode(event.data)
        except WebSocketDisconnect as exc:
            return _close_end(exc.code, exc.reason, connected)
    if connected:
        return _End("lost", f"nothing received for {within:g}s", True)
    return _End("lost", "no welcome within the connect timeout", False)


async def _sse_events(response: httpx.Response) -> AsyncIterator[wire.SSEEvent]:
    parser = wire.SSEParser()
    async for chunk in response.aiter_text():
        for event in parser.feed(chunk):
            yield event


def _close_end(code: int, reason: str, connected: bool) -> _End:
    detail = f"closed {code}" + (f" ({reason})" if reason else "")
    if code == wire.CLOSE_RESTART:
        return _End("reconnect", detail, connected)
    if code == wire.CLOSE_RESYNC:
        return _End("resync", "resync", connected)
    if code in (wire.CLOSE_PROTOCOL, wire.CLOSE_TOO_LARGE):
        return _End("fatal", detail, connected)
    return _End("lost", detail, connected)


def _find(exc: BaseException, kind: type[E]) -> E | None:
    """``exc`` itself, or the first ``kind`` inside it if it is an exception group."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find(inner, kind)
            if found is not None:
                return found
    return None


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, HTTPXWSException) and exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
