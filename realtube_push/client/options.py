"""``LiveOptions``: every setting of a ``LiveClient`` in one immutable value, with its default.

Promises: an instance is valid once constructed (bad buckets, an unknown transport or a
non-positive timer raise ``ValueError`` here, not at the first connection); it never changes
(derive a variant with ``dataclasses.replace``); ``buckets`` is normalized (lowercase, sorted,
deduplicated) and ``transports`` deduplicated in the order given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from realtube_push.client.wire import normalize_buckets

Transport = Literal["ws", "sse", "poll"]
TRANSPORTS: tuple[Transport, ...] = ("ws", "sse", "poll")


def _no_headers() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class LiveOptions:
    """How a ``LiveClient`` subscribes, connects and recovers. Times are in seconds.

    Subscription:

    - ``buckets`` (None: every video): 1-4 hex prefixes of SHA-256(videoId), at most 256;
    - ``channels`` (True): receive channel deltas too.

    Transports:

    - ``transports`` (``("ws", "sse", "poll")``): the ones to use, best first;
    - ``json_frames`` (False): ask for the ``realtube.v1.json`` WebSocket subprotocol
      (readable frames, for debugging) instead of MessagePack;
    - ``ping_interval`` (None: the heartbeat the server announces): how often the client
      pings over WebSocket;
    - ``poll_interval`` (1800: 30 min) and ``full_sync_interval`` (86400: 24 h): the pace of
      ``GET /api/sync/delta`` and of conditional full syncs while polling.

    Requests:

    - ``user_id`` (None): sent as ``X-User-ID`` (the sync endpoints limit per user);
    - ``headers`` (none): added to every request;
    - ``connect_timeout`` (10): for a connection, a handshake, a welcome or a REST answer.

    Recovery (docs/protocol.md, section 7):

    - ``heartbeat`` (20): assumed until a welcome announces the server's; a connection
      silent for 2.5 heartbeats is dead;
    - ``fallback_after`` (2): attempts on a transport that never connect before the next
      transport is tried (a protocol error falls back at once);
    - ``upgrade_interval`` (300): while on a worse transport, how often the best one is
      tried again;
    - ``reconnect_delay`` (1): the wait after a WebSocket close 1012 that came without a
      ``reconnect`` notice (a notice carries its own ``retryAfterMs``);
    - ``backoff_base`` (0.5) and ``backoff_cap`` (60): the full-jitter exponential backoff
      after a lost connection or a failed full sync;
    - ``retry_after_jitter`` (1): up to this much is added at random to an HTTP
      ``Retry-After`` (whole seconds, so the same for a whole herd of refused clients).
    """

    buckets: tuple[str, ...] | None = None
    channels: bool = True
    transports: tuple[Transport, ...] = TRANSPORTS
    json_frames: bool = False
    ping_interval: float | None = None
    poll_interval: float = 1800.0
    full_sync_interval: float = 86_400.0
    user_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=_no_headers)
    connect_timeout: float = 10.0
    heartbeat: float = 20.0
    fallback_after: int = 2
    upgrade_interval: float = 300.0
    reconnect_delay: float = 1.0
    backoff_base: float = 0.5
    backoff_cap: float = 60.0
    retry_after_jitter: float = 1.0

    def __post_init__(self) -> None:
        # frozen: normalized values are set through object.__setattr__, once, here
        buckets: Iterable[str] | None = self.buckets
        object.__setattr__(self, "buckets", normalize_buckets(buckets))
        transports = tuple(dict.fromkeys(self.transports))
        if not transports or any(t not in TRANSPORTS for t in transports):
            raise ValueError(f"transports must be a non-empty sequence of {TRANSPORTS}")
        object.__setattr__(self, "transports", transports)
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))
        positive = {
            "poll_interval": self.poll_interval,
            "full_sync_interval": self.full_sync_interval,
            "connect_timeout": self.connect_timeout,
            "heartbeat": self.heartbeat,
            "upgrade_interval": self.upgrade_interval,
            "backoff_base": self.backoff_base,
        }
        if self.ping_interval is not None:
            positive["ping_interval"] = self.ping_interval
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0, not {value!r}")
        if self.backoff_cap < self.backoff_base:
            raise ValueError("backoff_cap must be >= backoff_base")
        if self.fallback_after < 1:
            raise ValueError("fallback_after must be >= 1")
        if self.reconnect_delay < 0 or self.retry_after_jitter < 0:
            raise ValueError("reconnect_delay and retry_after_jitter must be >= 0")

    def request_headers(self) -> dict[str, str]:
        """The headers every request carries: ``headers``, plus ``X-User-ID`` if set."""
        headers = dict(self.headers)
        if self.user_id:
            headers.setdefault("X-User-ID", self.user_id)
        return headers
