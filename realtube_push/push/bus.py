"""The delta bus: committed sync-log batches travel from the writer to every instance.

Promises (publisher side):
- a batch is published only after its transaction committed, in one Redis MULTI that both
  records its deltas in the recent-delta store (``sync:recent``, a sorted set by seq) and
  PUBLISHes it, so a subscriber that sees the message can also replay it;
- delivery over pub/sub is at most once. Losing a message is survivable because each batch
  names its seq range: a subscriber that receives ``first_seq`` beyond the last seq it saw
  knows exactly which seqs to backfill (from ``sync:recent``, else PostgreSQL).
"""

from __future__ import annotations

from typing import Any

import msgpack
from redis.asyncio import Redis

from realtube_push.cache import Keys
from realtube_push.store.synclog import AppendedBatch

RECENT_MAX_DELTAS = 200_000


def pack_delta(seq: int, kind: str, entity_hash: str, payload: dict[str, Any]) -> bytes:
    """A delta as the bus and the recent store carry it: [seq, kind, hash, payload]."""
    return msgpack.packb([seq, kind, entity_hash, payload])


def pack_batch(batch: AppendedBatch) -> tuple[bytes, list[bytes]]:
    """The pub/sub message for a batch and its packed deltas (for the recent store)."""
    deltas = [
        pack_delta(batch.first_seq + i, e.kind, e.entity_hash, e.payload)
        for i, e in enumerate(batch.entries)
    ]
    message = msgpack.packb(
        {"epoch": batch.epoch, "first": batch.first_seq, "last": batch.last_seq, "deltas": deltas}
    )
    return message, deltas


async def publish_batch(redis: Redis, keys: Keys, batch: AppendedBatch) -> None:
    """Record the batch in the recent store and publish it, atomically (MULTI/EXEC)."""
    message, deltas = pack_batch(batch)
    mapping = {packed: batch.first_seq + i for i, packed in enumerate(deltas)}
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys.recent_epoch, batch.epoch)
        pipe.zadd(keys.recent_deltas, mapping)
        pipe.zremrangebyrank(keys.recent_deltas, 0, -RECENT_MAX_DELTAS - 1)
        pipe.publish(keys.deltas_channel, message)
        await pipe.execute()
