"""What a ``LiveClient`` reports: ``Status`` snapshots, ``Retry`` notices, change callbacks.

Promises: observers never poll. ``Observer`` calls the user's callbacks from the client's
task as things happen, and sets an ``anyio.Event`` on every change of cache or status, which
is what ``LiveClient.wait_until`` waits on. A callback may be a plain function or a
coroutine function; an exception it raises is wrapped in ``CallbackFailed`` so that no
network handler mistakes it for a network condition to retry.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import anyio

from realtube_push.client.cache import Change, Cursor, LocalCache
from realtube_push.client.options import Transport

ChangeCallback = Callable[[str, str, "dict[str, Any] | None"], Any]
AppliedCallback = Callable[[str, Sequence[Change]], Any]
StatusCallback = Callable[["Status"], Any]
RetryCallback = Callable[["Retry"], Any]


@dataclass(frozen=True, slots=True)
class Status:
    """What the client is doing right now (a snapshot; ``LiveClient.status`` makes a new one).

    ``transport`` is the transport in use or being tried (None before ``run()`` and after
    it); ``connected`` is true from a ``welcome`` (or a successful poll) until the connection
    ends; ``resume`` is the last welcome's ``resume`` (``"replay"``, ``"live"``, ``"fresh"``);
    ``heartbeats`` counts server pings received (WebSocket ``ping`` frames, each answered
    with ``pong``, and SSE ``: ping`` comments); ``connections`` counts welcomes;
    ``error`` says how the last attempt failed (None once connected).
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
class Retry:
    """The client is about to wait ``delay`` seconds, then try ``next`` at ``url``.

    Reported before every attempt that follows a failed or ended one (a fall-back to the
    next transport is reported with its delay 0). ``next`` is a transport, or
    ``"full_sync"`` for ``GET /api/sync/full``; ``reason`` says how the previous attempt
    ended (``"ConnectError: ..."``, ``"HTTP 503 (Retry-After 2s)"``, ``"overloaded"``, ...).
    """

    delay: float
    next: Transport | Literal["full_sync"]
    url: str
    reason: str


class CallbackFailed(Exception):
    """Wraps an exception raised by a user callback so no network handler swallows it."""

    def __init__(self, original: Exception) -> None:
        super().__init__(repr(original))
        self.original = original


#: Status fields whose change is reported to ``on_status`` (counters are not: they would
#: call it on every heartbeat).
_REPORTED = ("transport", "connected", "url", "error", "resume")


class Observer:
    """The client's observable state and the callbacks that follow it."""

    def __init__(
        self,
        cache: LocalCache,
        url: str,
        *,
        on_change: ChangeCallback | None,
        on_applied: AppliedCallback | None,
        on_status: StatusCallback | None,
        on_retry: RetryCallback | None,
    ) -> None:
        self._cache = cache
        self._status = Status(url=url)
        self._progress = anyio.Event()
        self._on_change = on_change
        self._on_applied = on_applied
        self._on_status = on_status
        self._on_retry = on_retry

    @property
    def status(self) -> Status:
        """The current status, with the cache's cursor."""
        return replace(self._status, cursor=self._cache.cursor)

    async def changed(self) -> None:
        """Return at the next change of cache or status."""
        await self._progress.wait()

    def notify(self) -> None:
        """Wake every ``changed()`` waiter."""
        self._progress.set()
        self._progress = anyio.Event()

    def reset(self, **fields: Any) -> None:
        """Set status fields without telling ``on_status`` (``run()`` ending)."""
        self._status = replace(self._status, **fields)
        self.notify()

    async def set_status(self, **fields: Any) -> None:
        """Change status fields; ``on_status`` hears of changes that a user would see."""
        old = self._status
        new = replace(old, **fields)
        self._status = new
        if new != old:
            self.notify()
            if any(getattr(old, f) != getattr(new, f) for f in _REPORTED):
                await _call(self._on_status, self.status)

    async def count(self, name: str) -> None:
        """Add one to a counter of the status (``heartbeats``, ``full_syncs``...)."""
        await self.set_status(**{name: getattr(self._status, name) + 1})

    async def applied(self, source: str, changes: Sequence[Change]) -> None:
        """Report changes applied from ``source`` (``"full"``, ``"ws"``, ``"sse"``, ``"poll"``)."""
        for change in changes:
            await _call(self._on_change, change.kind, change.id, change.item)
        await _call(self._on_applied, source, changes)
        self.notify()

    async def retrying(self, retry: Retry) -> None:
        """Report the wait before the next attempt."""
        await _call(self._on_retry, retry)


async def _call(callback: Callable[..., Any] | None, *args: Any) -> None:
    if callback is None:
        return
    try:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        raise CallbackFailed(exc) from exc
