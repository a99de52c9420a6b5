"""What a transport session and the client's state machine say to each other.

A transport (``transports/``) runs one session: it connects, streams, reports what it
receives to its ``SessionHost`` (the state machine: it owns the cache and the status), and
returns an ``Ending`` that says how the session ended and what the protocol asks for next.
Errors it raises instead (network trouble, ``Refused``, ``ResyncRequired`` from the cache)
are turned into an ``Ending`` by ``ending_of``. Nothing here does I/O.

The kinds of ending (docs/protocol.md, sections 4 and 7):

- ``resync``: full sync, then reconnect (``resync`` frame, close 4000, a cursor the cache
  cannot follow on from); ``delay`` is the frame's ``retryAfterMs``, to wait first;
- ``reconnect``: the instance is going away (``reconnect`` notice, close 1012): wait
  ``delay``, then the same transport on the next instance;
- ``shed``: the instance is overloaded (``reconnect`` notice with reason ``overloaded``,
  close 1013, HTTP 503 with ``Retry-After``): wait ``delay`` (the backoff if None), then the
  same transport again; never a reason to fall back to a worse one;
- ``lost``: any other loss: backoff (or ``delay``, a ``Retry-After``), then reconnect;
  attempts that never connect count towards falling back;
- ``fatal``: this transport cannot work with this server (a protocol error, 4xx): fall back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import httpx
from httpx_ws import HTTPXWSException

from realtube_push.client import wire
from realtube_push.client.cache import LocalCache, ResyncRequired
from realtube_push.client.options import LiveOptions, Transport

EndKind = Literal["resync", "reconnect", "shed", "lost", "fatal"]
E = TypeVar("E", bound=BaseException)

#: Answers that mean "this endpoint will not serve this client": retrying cannot help.
_REFUSED_FOR_GOOD = frozenset({400, 401, 403, 404})
_OVERLOADED = 503


@dataclass(frozen=True, slots=True)
class Ending:
    """How a session ended (``kind``, see the module docstring) and why (``detail``).

    ``delay`` is the wait the server asked for, if any; ``coarse`` says it is an HTTP
    ``Retry-After`` (whole seconds, the same for a whole refused herd), to which the client
    adds its own jitter, unlike a ``retryAfterMs`` that the server already spread.
    """

    kind: EndKind
    detail: str
    delay: float | None = None
    coarse: bool = False


class Refused(Exception):
    """An HTTP answer other than the one expected: its status and ``Retry-After`` (s)."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        text = f"HTTP {status}"
        if retry_after is not None:
            text += f" (Retry-After {retry_after:g}s)"
        super().__init__(text)
        self.status = status
        self.retry_after = retry_after

    @classmethod
    def of(cls, response: httpx.Response) -> Refused:
        """The refusal a response means (``Retry-After`` in seconds; dates are ignored)."""
        raw = response.headers.get("Retry-After", "").strip()
        try:
            retry_after = max(float(raw), 0.0) if raw else None
        except ValueError:
            retry_after = None
        return cls(response.status_code, retry_after)


class SessionHost(Protocol):
    """The client as a transport session sees it: where to connect, what to report."""

    @property
    def http(self) -> httpx.AsyncClient:
        """The HTTP client every request goes through."""
        ...

    @property
    def url(self) -> str:
        """The base URL of the instance to use."""
        ...

    @property
    def cache(self) -> LocalCache:
        """The cache (read its cursor and subscription; the host applies changes)."""
        ...

    @property
    def options(self) -> LiveOptions:
        """The client's options."""
        ...

    @property
    def heartbeat(self) -> float:
        """The server's heartbeat as last announced (the options' until a welcome)."""
        ...

    async def welcomed(self, welcome: Mapping[str, Any], transport: Transport) -> float:
        """Record a ``welcome`` (raises ``ResyncRequired`` for another epoch); returns the
        heartbeat to expect."""
        ...

    async def apply_frame(
        self, frame: Mapping[str, Any], *, resuming: bool, source: Transport
    ) -> None:
        """Apply a ``deltas`` frame (raises ``ResyncRequired`` if it does not follow on)."""
        ...

    async def apply_page(self, page: Mapping[str, Any], *, after: int) -> None:
        """Apply a ``GET /api/sync/delta`` page asked for ``cursor=after``."""
        ...

    async def heartbeat_received(self) -> None:
        """Count a server heartbeat."""
        ...

    async def polled(self) -> None:
        """Polling works: the session counts as connected (it has no welcome)."""
        ...

    def full_sync_due(self) -> bool:
        """Whether the periodic full sync of polling is due."""
        ...

    async def full_sync(self, *, conditional: bool) -> None:
        """``GET /api/sync/full`` into the cache (``conditional``: with ``If-None-Match``)."""
        ...


def control_ending(frame: Mapping[str, Any]) -> Ending:
    """The ending a final server frame (``resync``, ``reconnect``, ``error``) announces; any
    other frame where a welcome was expected is a loss."""
    kind = frame.get("t")
    if kind == "resync":
        return Ending("resync", str(frame.get("reason") or "resync"), _delay_ms(frame))
    if kind == "reconnect":
        reason = str(frame.get("reason") or "reconnect")
        return Ending("shed" if reason == "overloaded" else "reconnect", reason, _delay_ms(frame))
    if kind == "error":
        code = str(frame.get("code"))
        fatal = code in wire.FATAL_ERROR_CODES
        return Ending("fatal" if fatal else "lost", f"{code}: {frame.get('message')}")
    return Ending("lost", f"unexpected {kind!r} frame")


def close_ending(code: int, reason: str) -> Ending:
    """The ending a WebSocket close code means when no final frame explained it."""
    detail = f"closed {code}" + (f" ({reason})" if reason else "")
    if code == wire.CLOSE_RESTART:
        return Ending("reconnect", detail)
    if code == wire.CLOSE_TRY_LATER:
        return Ending("shed", detail)
    if code == wire.CLOSE_RESYNC:
        return Ending("resync", "resync")
    if code in wire.FATAL_CLOSE_CODES:
        return Ending("fatal", detail)
    return Ending("lost", detail)


def ending_of(exc: Exception) -> Ending:
    """The ending an exception out of a session means (possibly inside a group)."""
    resync = find(exc, ResyncRequired)
    if resync is not None:
        return Ending("resync", resync.reason)
    refused = find(exc, Refused)
    if refused is not None:
        if refused.status in _REFUSED_FOR_GOOD:
            return Ending("fatal", str(refused))
        kind: EndKind = "lost"
        if refused.status == _OVERLOADED and refused.retry_after is not None:
            kind = "shed"
        return Ending(kind, str(refused), refused.retry_after, coarse=True)
    return Ending("lost", describe(exc))


def find(exc: BaseException, kind: type[E]) -> E | None:
    """``exc`` itself, or the first ``kind`` inside it if it is an exception group."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find(inner, kind)
            if found is not None:
                return found
    return None


def describe(exc: BaseException) -> str:
    """``Type: message`` of the innermost meaningful exception (for status and logs)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, HTTPXWSException) and exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _delay_ms(frame: Mapping[str, Any]) -> float | None:
    ms = frame.get("retryAfterMs")
    if isinstance(ms, int | float) and not isinstance(ms, bool) and ms >= 0:
        return ms / 1000
    return None
