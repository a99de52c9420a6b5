"""``LiveClient``: keeps a ``LocalCache`` in step with the server over WebSocket, SSE or polling.

Written on AnyIO, httpx and httpx-ws only, so it runs under asyncio and trio alike; every task
it starts belongs to a task group inside ``run()`` and ends with it. The pieces: ``options``
(``LiveOptions``, every setting), ``machine`` (the state machine: transport choice, waits,
full syncs), ``transports`` (one session of WebSocket, SSE or polling each), ``observe``
(``Status``, ``Retry``, callbacks), ``cache`` (the data and its cursor).

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
  the next instance of ``base_url`` when several are given, resuming from the cursor; an
  overloaded server (``reconnect`` notice ``overloaded`` and close 1013, or HTTP 503 with
  ``Retry-After`` on the WebSocket handshake or the event stream) is retried on the same
  transport after the delay it asks for; a ``resync`` frame's ``retryAfterMs`` is waited
  before the full sync; any other loss reconnects after an exponential backoff with full
  jitter (``Backoff``);
- heartbeats: server ``ping`` frames are answered, the client sends its own ``ping`` every
  heartbeat, and a connection silent for 2.5 heartbeats is treated as dead;
- observers never poll: ``on_change``/``on_applied``/``on_status``/``on_retry`` are called
  from the client's task as things happen, and ``wait_for_cursor``/``wait_until`` wake on an
  ``anyio.Event`` that is set on every change of cache or status.

Callbacks run inside the client's task: they must not block, and an exception they raise
ends ``run()`` (it is a bug of the caller, not a network condition to retry).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import httpx

from realtube_push.client.cache import Cursor, LocalCache
from realtube_push.client.machine import StateMachine
from realtube_push.client.observe import (
    AppliedCallback,
    CallbackFailed,
    ChangeCallback,
    Observer,
    RetryCallback,
    Status,
    StatusCallback,
)
from realtube_push.client.options import LiveOptions


class LiveClient:
    """A live-updated cache of the synced dataset (see the module docstring for promises).

    ``base_url`` is one server, or several instances of the same service: the client starts
    on the first and moves to the next after each lost connection or ``reconnect`` notice.
    ``options`` holds every setting (``LiveOptions``: subscription, transports, timers).
    A ``cache`` given (say, restored from storage) carries its own subscription and cursor,
    which is resumed from (``options.buckets``, if set, must match it). ``http_client`` is
    used for every request when given (else the client owns one for the duration of
    ``run()``). ``on_change(kind, id, item)`` hears each changed entry (item None: removed),
    ``on_applied(source, changes)`` each applied frame, page or full sync, ``on_status``
    each change of transport, connection, instance or error, ``on_retry`` each wait before
    another attempt.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        options: LiveOptions | None = None,
        *,
        cache: LocalCache | None = None,
        http_client: httpx.AsyncClient | None = None,
        on_change: ChangeCallback | None = None,
        on_applied: AppliedCallback | None = None,
        on_status: StatusCallback | None = None,
        on_retry: RetryCallback | None = None,
    ) -> None:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("base_url needs at least one URL")
        options = options or LiveOptions()
        if cache is None:
            cache = LocalCache(buckets=options.buckets, channels=options.channels)
        elif options.buckets is not None and options.buckets != cache.buckets:
            raise ValueError("options.buckets differ from the given cache's buckets")
        self.options = options
        self.cache = cache
        self._given_http = http_client
        self._observer = Observer(
            cache,
            urls[0].rstrip("/"),
            on_change=on_change,
            on_applied=on_applied,
            on_status=on_status,
            on_retry=on_retry,
        )
        self._machine = StateMachine([u.rstrip("/") for u in urls], options, cache, self._observer)
        self._running = False

    # -- observation --------------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        """The instances, in the order they are tried."""
        return list(self._machine.urls)

    @property
    def url(self) -> str:
        """The instance in use."""
        return self._machine.url

    @property
    def status(self) -> Status:
        """The current status, with the cache's cursor."""
        return self._observer.status

    async def wait_until(self, predicate: Callable[[LiveClient], bool]) -> None:
        """Return once ``predicate(self)`` holds; re-checked on every change, never polled.

        Wrap in ``anyio.fail_after`` for a deadline.
        """
        while not predicate(self):
            await self._observer.changed()

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

    # -- running --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the live channel until cancelled (full syncs and reconnects included).

        One ``run()`` at a time per client; it returns only by cancellation or by raising
        what a callback raised.
        """
        if self._running:
            raise RuntimeError("this LiveClient is already running")
        self._running = True
        try:
            if self._given_http is not None:
                await self._machine.run(self._given_http)
            else:
                timeout = httpx.Timeout(self.options.connect_timeout)
                async with httpx.AsyncClient(timeout=timeout) as http:
                    await self._machine.run(http)
        except CallbackFailed as exc:
            raise exc.original from None
        finally:
            self._running = False
            self._observer.reset(transport=None, connected=False)
