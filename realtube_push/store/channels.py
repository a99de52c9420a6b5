"""The channel queue, the set-based reads/writes of an aggregation batch, and channel reads.

Promises:
- a queued channel is claimed by exactly one worker (``FOR UPDATE SKIP LOCKED``) and its
  queue row is deleted in the transaction that writes the result: a crash puts it back, a
  concurrent worker never sees it;
- a channel is claimed only once it has sat in the queue for the debounce window, so a burst
  of score changes on one channel costs one aggregation, not one per video;
- a batch costs a fixed number of statements whatever its size (claim, ensure rows, lock,
  one read of every claimed channel's voted videos, one write);
- channel rows are locked in ``channel_id`` order, so two writers of overlapping channel sets
  (a worker and an admin action) cannot deadlock on them.

Example of the debounce: votes on three videos of channel C at t=0.0, 0.4 and 1.1 s re-queue
C each time (``ON CONFLICT DO NOTHING`` keeps the first ``enqueued_at``); with a 2 s window
a worker claims C once, at t >= 2.0, and sees all three new scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from realtube_push.domain.ids import entity_hash
from realtube_push.store.db import Connection, Executor


@dataclass(slots=True)
class ChannelForAggregation:
    """A claimed channel as stored, with the videos that hold votes."""

    channel_id: str
    score: float
    total_videos: int
    flagged_videos: int
    top_categories: tuple[str, ...]
    locked: bool
    auto_flag_new: bool
    last_updated: datetime
    # (score, total_votes, {category: votes}) of each video with total_votes > 0
    videos: list[tuple[float, int, dict[str, int]]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ChannelWrite:
    """A channel's new aggregate; ``locked`` is never written here (admins own it)."""

    channel_id: str
    score: float
    total_videos: int
    flagged_videos: int
    top_categories: tuple[str, ...]
    auto_flag_new: bool


_CLAIM = """
DELETE FROM channel_queue WHERE channel_id IN (
    SELECT channel_id FROM channel_queue
    WHERE enqueued_at <= now() - make_interval(secs => $2)
    ORDER BY enqueued_at LIMIT $1 FOR UPDATE SKIP LOCKED
) RETURNING channel_id
"""


async def claim_batch(conn: Connection, limit: int, *, debounce_seconds: float) -> list[str]:
    """Take up to ``limit`` channels queued at least ``debounce_seconds`` ago.

    Only valid inside the batch's transaction: the deletion is what hides the rows from other
    workers, and a rollback returns them to the queue.
    """
    rows = await conn.fetch(_CLAIM, limit, float(debounce_seconds))
    return [r["channel_id"] for r in rows]


async def queue_length(conn: Executor) -> int:
    """How many channels wait for aggregation (ripe or not)."""
    return int(await conn.fetchval("SELECT count(*) FROM channel_queue"))


async def enqueue(conn: Executor, channel_ids: Sequence[str]) -> None:
    """Queue channels for aggregation (admin actions); an already queued one keeps its place."""
    if channel_ids:
        await conn.execute(
            "INSERT INTO channel_queue (channel_id) SELECT DISTINCT unnest($1::text[])"
            " ON CONFLICT DO NOTHING",
            list(channel_ids),
        )


# Channels with videos, plus channels that still show an aggregate: a channel whose videos all
# moved elsewhere must be recomputed too, or its old score would stay forever.
_ENQUEUE_ALL = """
WITH ins AS (
    INSERT INTO channel_queue (channel_id)
    SELECT channel_id FROM videos WHERE channel_id IS NOT NULL
    UNION
    SELECT channel_id FROM channels WHERE score > 0 OR total_videos > 0 OR auto_flag_new
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM ins
"""


async def enqueue_all(conn: Executor) -> int:
    """Queue every channel that has videos (the periodic full pass); returns how many were new.

    Rows get the ordinary ``enqueued_at = now()``, so they ripen after the debounce window like
    any other; channels already queued keep their earlier place.
    """
    return int(await conn.fetchval(_ENQUEUE_ALL))


_LOCK = """
SELECT channel_id, score, total_videos, flagged_videos, top_categories, locked, auto_flag_new,
       last_updated
FROM channels WHERE channel_id = ANY($1::text[]) ORDER BY channel_id FOR UPDATE
"""

# One row per voted video of every claimed channel, its category votes as two parallel arrays.
_VIDEOS = """
SELECT v.channel_id, v.score, v.total_votes,
       COALESCE(array_agg(c.category ORDER BY c.category) FILTER (WHERE c.votes > 0), '{}')
           AS categories,
       COALESCE(array_agg(c.votes ORDER BY c.category) FILTER (WHERE c.votes > 0), '{}')
           AS category_votes
FROM videos v
LEFT JOIN video_categories c ON c.video_id = v.video_id
WHERE v.channel_id = ANY($1::text[]) AND v.total_votes > 0
GROUP BY v.video_id
"""


async def load_batch(conn: Connection, channel_ids: Sequence[str]) -> list[ChannelForAggregation]:
    """Lock the claimed channels and read their voted videos (set-based, no per-channel query).

    A claimed channel without a ``channels`` row (videos naming a channel nobody registered)
    gets one first, so every claimed id comes back.
    """
    ids = sorted(set(channel_ids))
    await conn.execute(
        "INSERT INTO channels (channel_id, channel_hash)"
        " SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (channel_id) DO NOTHING",
        ids,
        [entity_hash(c) for c in ids],
    )
    channels = {
        r["channel_id"]: ChannelForAggregation(
            channel_id=r["channel_id"],
            score=r["score"],
            total_videos=r["total_videos"],
            flagged_videos=r["flagged_videos"],
            top_categories=tuple(r["top_categories"]),
            locked=r["locked"],
            auto_flag_new=r["auto_flag_new"],
            last_updated=r["last_updated"],
        )
        for r in await conn.fetch(_LOCK, ids)
    }
    for r in await conn.fetch(_VIDEOS, ids):
        channels[r["channel_id"]].videos.append(
            (
                float(r["score"]),
                int(r["total_votes"]),
                dict(zip(r["categories"], r["category_votes"], strict=True)),
            )
        )
    return list(channels.values())


# top_categories travels as a comma-joined string: unnest cannot carry an array per row, and
# category names never contain commas.
_WRITE = """
UPDATE channels c SET score = s.score, total_videos = s.total_videos,
       flagged_videos = s.flagged_videos, top_categories = string_to_array(s.top, ','),
       auto_flag_new = s.auto_flag_new, last_updated = $7
FROM unnest($1::text[], $2::float8[], $3::int[], $4::int[], $5::text[], $6::bool[])
    AS s(channel_id, score, total_videos, flagged_videos, top, auto_flag_new)
WHERE c.channel_id = s.channel_id
"""


async def write_channels(conn: Connection, writes: Sequence[ChannelWrite], now: datetime) -> None:
    """Store new aggregates in one statement, stamping them ``last_updated = now``."""
    if not writes:
        return
    await conn.execute(
        _WRITE,
        [w.channel_id for w in writes],
        [w.score for w in writes],
        [w.total_videos for w in writes],
        [w.flagged_videos for w in writes],
        [",".join(w.top_categories) for w in writes],
        [w.auto_flag_new for w in writes],
        now,
    )


async def get_channel(conn: Executor, channel_id: str) -> asyncpg.Record | None:
    """The stored channel for ``GET /api/channels/{id}``, or None when unknown.

    Columns: channel_id, channel_hash, score, total_videos, flagged_videos, top_categories,
    locked, auto_flag_new, last_updated.
    """
    return await conn.fetchrow(
        "SELECT channel_id, channel_hash, score, total_videos, flagged_videos, top_categories,"
        " locked, auto_flag_new, last_updated FROM channels WHERE channel_id = $1",
        channel_id,
    )
