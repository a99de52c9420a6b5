"""After a commit: invalidate the cache and publish the batch, the one way a committed change
leaves the process. The vote path, the admin actions and the workers all call
``Publisher.after_commit``.

Promises:
- a batch is published only after its transaction committed, in one Redis MULTI that both
  records its deltas in the recent-delta store (``sync:recent``, a sorted set by seq) and
  PUBLISHes it on ``rt:deltas``, so a subscriber that sees the message can also replay it;
- nothing here can fail a committed write: when Redis is unreachable the change is already
  durable in PostgreSQL, cached copies expire with their TTL, and subscribers backfill a
  missed batch from its seq range (``push/bus.py``). Such a failure is counted, and logged
  once per outage (``observability.RedisOutage``), not once per call.

The bus message (msgpack): ``{"epoch", "first", "last", "ts", "deltas"}``, each delta packed
as ``[seq, kind, entity_hash, payload]`` (the same bytes are the recent store's members).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.exceptions import RedisError

from realtube_push.cache import Cache, Keys
from realtube_push.observability import RedisOutage
from realtube_push.store.synclog import AppendedBatch

RECENT_MAX_DELTAS = 200_000


def pack_delta(seq: int, kind: str, entity_hash: str, payload: dict[str, Any]) -> bytes:
    """A delta as the bus and the recent store carry it: [seq, kind, hash, payload]."""
    packed: bytes = msgpack.packb([seq, kind, entity_hash, payload])
    return packed


def pack_batch(batch: AppendedBatch) -> tuple[bytes, list[bytes]]:
    """The pub/sub message for a batch and its packed deltas (for the recent store)."""
    deltas = [
        pack_delta(batch.first_seq + i, e.kind, e.entity_hash, e.payload)
        for i, e in enumerate(batch.entries)
    ]
    message: bytes = msgpack.packb(
        {
            "epoch": batch.epoch,
            "first": batch.first_seq,
            "last": batch.last_seq,
            "ts": time.time(),
            "deltas": deltas,
        }
    )
    return message, deltas


class Publisher:
    """Cache invalidation and the bus publish of committed changes."""

    def __init__(self, redis: Redis, keys: Keys, cache: Cache, outage: RedisOutage) -> None:
        self._redis = redis
        self._keys = keys
        self._cache = cache
        self._outage = outage

    async def after_commit(
        self,
        batch: AppendedBatch | None = None,
        *,
        videos: Sequence[tuple[str, str]] = (),
        channels: Sequence[str] = (),
    ) -> None:
        """Drop the cached copies of ``videos`` ((id, hash) pairs) and ``channels``, then
        publish ``batch`` (None: nothing was logged). Never raises for Redis trouble: it is
        counted as the failed step (``invalidate`` or ``publish``)."""
        if batch is None and not videos and not channels:
            return
        step = "invalidate"
        try:
            await self._cache.invalidate(videos=videos, channels=channels)
            if batch is not None:
                step = "publish"
                await self.publish(batch)
        except (RedisError, OSError) as exc:  # Redis down: PostgreSQL already holds the truth
            self._outage.failed(step, exc)
        else:
            self._outage.succeeded()

    async def publish(self, batch: AppendedBatch) -> None:
        """Record the batch in the recent store and publish it, atomically (MULTI/EXEC)."""
        message, deltas = pack_batch(batch)
        keys = self._keys
        mapping = {packed: batch.first_seq + i for i, packed in enumerate(deltas)}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.recent_epoch, batch.epoch)
            pipe.zadd(keys.recent_deltas, mapping)
            pipe.zremrangebyrank(keys.recent_deltas, 0, -RECENT_MAX_DELTAS - 1)
            pipe.publish(keys.deltas_channel, message)
            await pipe.execute()
