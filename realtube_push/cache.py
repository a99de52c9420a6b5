"""Redis keys, TTLs and invalidation: every kind of key the service keeps in Redis, below.

| key                      | value                                   | TTL     |
|--------------------------|-----------------------------------------|---------|
| ``video:{videoId}``      | video JSON                              | 5 min   |
| ``channel:{channelId}``  | channel JSON                            | 15 min  |
| ``prefix:{hashPrefix}``  | JSON list of the prefix's video objects | 5 min   |
| ``ratelimit:{who}:{ep}`` | counter (see ``ratelimit.py``)          | window  |
| ``sync:recent``          | recent deltas by seq (see ``push/bus``) | 48 h    |
| ``admin:stats:{inst}``   | an instance's counters (``push/snapshots``) | 5 s     |
| ``admin:instances``      | instance -> last snapshot time          | none    |
| ``admin:revoked:{sid}``  | logged-out admin session                | session |
| ``live:slots:{ip#}``     | process -> its live connections from an | 30 s,   |
|                          | address hash (see ``push/slots``)       | renewed |

Writers delete keys after their transaction commits (write-through invalidation) and
broadcast the same ids on ``invalidate`` so any per-process copy is dropped too. A reader
that misses repopulates from PostgreSQL, so a key is never staler than its TTL even if an
invalidation is lost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from realtube_push.observability import RedisOutage

T = TypeVar("T")

PREFIX_LENGTHS = range(4, 9)


@dataclass(frozen=True, slots=True)
class Keys:
    """Key and channel names, optionally namespaced (several deployments on one Redis)."""

    namespace: str = ""

    def _k(self, name: str) -> str:
        return f"{self.namespace}:{name}" if self.namespace else name

    def video(self, video_id: str) -> str:
        return self._k(f"video:{video_id}")

    def channel(self, channel_id: str) -> str:
        return self._k(f"channel:{channel_id}")

    def prefix(self, prefix: str) -> str:
        return self._k(f"prefix:{prefix}")

    def ratelimit(self, who: str, endpoint: str) -> str:
        return self._k(f"ratelimit:{who}:{endpoint}")

    def stats(self) -> str:
        return self._k("stats")

    @property
    def recent_deltas(self) -> str:
        return self._k("sync:recent")

    @property
    def recent_epoch(self) -> str:
        return self._k("sync:recent:epoch")

    @property
    def deltas_channel(self) -> str:
        return self._k("rt:deltas")

    @property
    def invalidate_channel(self) -> str:
        return self._k("rt:invalidate")

    @property
    def admin_channel(self) -> str:
        return self._k("rt:admin")

    def admin_stats(self, instance: str) -> str:
        """One instance's latest counters snapshot for the admin dashboard (short TTL)."""
        return self._k(f"admin:stats:{instance}")

    @property
    def admin_instances(self) -> str:
        """Sorted set: instance id -> time of its last stats snapshot."""
        return self._k("admin:instances")

    def live_slots(self, address_hash: str) -> str:
        """Hash: process -> its live connections from one (hashed) client address. The hash
        in braces keeps the key in one cluster slot with nothing else needed."""
        return self._k(f"live:slots:{{{address_hash}}}")

    def admin_revoked(self, session_id: str) -> str:
        """A logged-out admin session (kept until the session would have expired)."""
        return self._k(f"admin:revoked:{session_id}")


@dataclass(frozen=True, slots=True)
class Lookup:
    """A cache read: the value (None on a miss) and the key's generation at read time."""

    value: object | None
    generation: bytes | str | None  # as the client returns it (bytes: no decode_responses)


# Fill only if no invalidation happened since the lookup: a reader that fetched from
# PostgreSQL before a writer's commit must not store its stale copy after the writer's DEL.
_FILL_IF_CURRENT = """
if redis.call('GET', KEYS[2]) == (ARGV[1] ~= '' and ARGV[1] or false) then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""
GENERATION_TTL_SECONDS = 86_400

# Bump each key's generation, drop the key, broadcast: one command from Python instead of a
# pipeline of 2n+2 (packing that pipeline was a fifth of a vote's CPU time).
_INVALIDATE = """
local n = #KEYS / 2
for i = 1, n do
  redis.call('INCR', KEYS[n + i])
  redis.call('EXPIRE', KEYS[n + i], ARGV[3])
end
redis.call('DEL', unpack(KEYS, 1, n))
redis.call('PUBLISH', ARGV[1], ARGV[2])
return n
"""


class Cache:
    """JSON values with their TTLs (``VIDEO_CACHE_TTL``, ``CHANNEL_CACHE_TTL``), and their
    invalidation.

    Promise: a value is never staler than the invalidation that followed it. Each key has a
    generation counter (``{key}:gen``) that invalidation bumps; a fill carries the generation
    its lookup saw and is dropped if it moved. Redis trouble is a miss, never an error: the
    database answers instead.
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        outage: RedisOutage,
        *,
        video_ttl: int,
        channel_ttl: int,
    ) -> None:
        self._redis = redis
        self._outage = outage
        self.keys = keys
        self.video_ttl = video_ttl
        self.channel_ttl = channel_ttl
        self._fill = redis.register_script(_FILL_IF_CURRENT)
        self._invalidate = redis.register_script(_INVALIDATE)

    async def lookup(self, key: str) -> Lookup:
        """The cached value and generation (one round trip); a miss when Redis fails."""
        try:
            raw, generation = await self._redis.mget(key, f"{key}:gen")
        except RedisError as exc:
            self._outage.failed("cache_read", exc)
            return Lookup(None, None)
        self._outage.succeeded()
        return Lookup(None if raw is None else orjson.loads(raw), generation)

    async def fill(self, key: str, value: object, ttl: int, seen: Lookup) -> None:
        """Store ``value`` unless the key was invalidated after ``seen`` was read."""
        generation = b"" if seen.generation is None else seen.generation
        try:
            await self._fill(keys=[key, f"{key}:gen"], args=[generation, orjson.dumps(value), ttl])
        except RedisError as exc:
            self._outage.failed("cache_fill", exc)
        else:
            self._outage.succeeded()

    async def read_through(
        self, key: str, ttl: int, load: Callable[[], Awaitable[T | None]]
    ) -> tuple[T | None, bool]:
        """The cached value, else ``load()`` (stored when not None); and whether it was a hit."""
        seen = await self.lookup(key)
        if seen.value is not None:
            # what a load() for this key stored: the same kind of value
            return cast(T, seen.value), True
        value = await load()
        if value is not None:
            await self.fill(key, value, ttl, seen)
        return value, False

    async def invalidate(
        self,
        *,
        videos: Iterable[tuple[str, str]] = (),
        channels: Iterable[str] = (),
    ) -> None:
        """Drop the keys of changed videos ((id, hash) pairs) and channels, then broadcast.

        Raises RedisError: the caller decides (after a commit, ``publisher.py`` counts it).
        """
        video_list = list(videos)
        channel_list = list(channels)
        keys: list[str] = []
        for video_id, video_hash in video_list:
            keys.append(self.keys.video(video_id))
            keys.extend(self.keys.prefix(video_hash[:n]) for n in PREFIX_LENGTHS)
        keys.extend(self.keys.channel(c) for c in channel_list)
        if not keys:
            return
        message = orjson.dumps({"videos": [v for v, _ in video_list], "channels": channel_list})
        await self._invalidate(
            keys=keys + [f"{key}:gen" for key in keys],
            args=[self.keys.invalidate_channel, message, GENERATION_TTL_SECONDS],
        )
