"""Redis keys, TTLs and invalidation: the seed's key table, in one place.

| key                      | value                                   | TTL     |
|--------------------------|-----------------------------------------|---------|
| ``video:{videoId}``      | video JSON                              | 5 min   |
| ``channel:{channelId}``  | channel JSON                            | 15 min  |
| ``prefix:{hashPrefix}``  | JSON list of the prefix's video objects | 5 min   |
| ``ratelimit:{who}:{ep}`` | counter (see ``ratelimit.py``)          | window  |
| ``sync:recent``          | recent deltas by seq (see ``push/bus``) | 48 h    |

Writers delete keys after their transaction commits (write-through invalidation) and
broadcast the same ids on ``invalidate`` so any per-process copy is dropped too. A reader
that misses repopulates from PostgreSQL, so a key is never staler than its TTL even if an
invalidation is lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

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


class Cache:
    """JSON values with the seed's TTLs, and their invalidation."""

    def __init__(self, redis: Redis, keys: Keys, *, video_ttl: int, channel_ttl: int) -> None:
        self._redis = redis
        self.keys = keys
        self._video_ttl = video_ttl
        self._channel_ttl = channel_ttl
        self.hits = 0
        self.misses = 0

    async def get_json(self, key: str) -> object | None:
        """The cached value, or None on a miss (counted for the hit ratio)."""
        raw = await self._redis.get(key)
        if raw is None:
            self.misses += 1
            return None
        self.hits += 1
        return orjson.loads(raw)

    async def put_video(self, video_id: str, value: object) -> None:
        await self._redis.set(self.keys.video(video_id), orjson.dumps(value), ex=self._video_ttl)

    async def put_channel(self, channel_id: str, value: object) -> None:
        await self._redis.set(
            self.keys.channel(channel_id), orjson.dumps(value), ex=self._channel_ttl
        )

    async def put_prefix(self, prefix: str, value: object) -> None:
        await self._redis.set(self.keys.prefix(prefix), orjson.dumps(value), ex=self._video_ttl)

    async def invalidate(
        self,
        *,
        videos: Iterable[tuple[str, str]] = (),
        channels: Iterable[str] = (),
    ) -> None:
        """Drop the keys of changed videos ((id, hash) pairs) and channels, then broadcast."""
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
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(*keys)
            pipe.publish(self.keys.invalidate_channel, message)
            await pipe.execute()
