"""Votes: cast, change and withdraw, each in one transaction.

Promises:
- a user holds at most one vote per video (``UNIQUE(video_id, user_id)``); voting again
  changes the category, it never stacks;
- the latest *cast* time wins: an offline vote queued earlier and delivered later than a
  newer one is acknowledged but not applied (``applied = False``);
- counters (``videos.total_votes``, ``video_categories.votes``, ``users.total_votes``) are
  kept exact by a row trigger working from OLD/NEW, never read-modify-write;
- every applied change enqueues the video in ``score_queue`` in the same transaction, so the
  recalculation is as durable as the vote (the NOTIFY that follows is a wake-up only);
- a recalculation never misses a committed change: the transaction takes the video's queue
  row (inserting it, or locking the one already queued) before it touches anything else, and
  holds it to commit. The score worker claims only unlocked queue rows, so it either claims
  the row after this commit (and reads this change) or has claimed it before (then this
  transaction waits for the worker's commit and queues the video anew).

  Why "already queued" is not enough, concretely: video V is queued by an earlier vote; a new
  vote finds the row and moves on without locking it; a worker claims the row, reads V's votes
  (the new one is uncommitted, so invisible), writes the score and deletes the row; the vote
  commits. V's score now ignores that vote, and nothing is left in the queue to fix it.
  Taking the queue row first is also the worker's lock order (queue row, then video), so the
  two never deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from realtube_push.domain.trust import NEW_ACCOUNT_TRUST, vote_weight
from realtube_push.store.db import Connection


@dataclass(frozen=True, slots=True)
class VoteOutcome:
    """What the voter is told: whether the vote took effect, and the scores as stored now."""

    applied: bool
    video_score: float
    user_trust: float


# Taken first in a vote's transaction and held to commit (see the module docstring). The no-op
# update is what locks a row that is already queued; the first enqueue time is kept.
_HOLD_QUEUE = """
INSERT INTO score_queue (video_id) VALUES ($1)
ON CONFLICT (video_id) DO UPDATE SET enqueued_at = score_queue.enqueued_at
"""

# The queue hold and the voter's row in one round trip. Neither is the video row, so their
# order within the statement does not matter for the queue-row-then-video lock order.
_HOLD_QUEUE_AND_UPSERT_USER = f"""
WITH hold AS ({_HOLD_QUEUE})
INSERT INTO users (user_id, trust_score) VALUES ($2, $3)
ON CONFLICT (user_id) DO UPDATE SET last_active = now()
RETURNING trust_score, is_vip, is_shadowbanned
"""

# One statement: video (with the channel's auto-flag prior when new), the vote under
# last-write-wins and the IP-hash record.
_CAST = """
WITH chan AS (
    INSERT INTO channels (channel_id, channel_hash)
    SELECT $5::text, $9::text WHERE $5::text IS NOT NULL
    ON CONFLICT (channel_id) DO NOTHING
), vid AS (
    INSERT INTO videos (video_id, video_hash, channel_id, preliminary)
    VALUES ($1, $8, $5, COALESCE(
        (SELECT auto_flag_new FROM channels WHERE channel_id = $5), false))
    ON CONFLICT (video_id) DO UPDATE SET channel_id = EXCLUDED.channel_id
        WHERE EXCLUDED.channel_id IS NOT NULL
          AND videos.channel_id IS DISTINCT FROM EXCLUDED.channel_id
    RETURNING video_id
), vote AS (
    INSERT INTO votes (video_id, user_id, category, weight, vip, cast_at, ip_hash, user_agent)
    VALUES ($1, $2, $3, $4, $10, $6, $7, $11)
    ON CONFLICT (video_id, user_id) DO UPDATE
        SET category = EXCLUDED.category, weight = EXCLUDED.weight, vip = EXCLUDED.vip,
            cast_at = EXCLUDED.cast_at, ip_hash = EXCLUDED.ip_hash,
            user_agent = EXCLUDED.user_agent, updated_at = now()
        WHERE votes.cast_at <= EXCLUDED.cast_at
    RETURNING id
), seen AS (
    INSERT INTO ip_hashes (ip_hash, user_id) SELECT $7, $2 WHERE $7::text IS NOT NULL
    ON CONFLICT (ip_hash, user_id) DO UPDATE
        SET votes = ip_hashes.votes + 1, last_seen = now()
)
SELECT EXISTS (SELECT 1 FROM vote) AS applied,
       COALESCE((SELECT score FROM videos WHERE video_id = $1), 0) AS score
"""


async def cast_vote(
    conn: Connection,
    *,
    video_id: str,
    video_hash: str,
    user_id: str,
    category: str,
    cast_at: datetime,
    channel_id: str | None,
    channel_hash: str | None,
    ip_hash: str | None,
    user_agent: str | None,
) -> VoteOutcome:
    """Record (or change) ``user_id``'s vote on ``video_id`` and queue its recalculation.

    The video is queued even when the vote is not applied (an older cast time): the queue row
    must be held before the outcome is known, and a recalculation of unchanged votes is
    harmless.
    """
    async with conn.transaction():
        user = await conn.fetchrow(
            _HOLD_QUEUE_AND_UPSERT_USER, video_id, user_id, NEW_ACCOUNT_TRUST
        )
        assert user is not None
        is_vip = bool(user["is_vip"])
        banned = bool(user["is_shadowbanned"])
        weight = vote_weight(user["trust_score"], is_vip=is_vip, is_shadowbanned=banned)
        row = await conn.fetchrow(
            _CAST,
            video_id,
            user_id,
            category,
            weight,
            channel_id,
            cast_at,
            ip_hash,
            video_hash,
            channel_hash,
            is_vip and not banned,
            user_agent,
        )
        assert row is not None
    return VoteOutcome(
        applied=row["applied"], video_score=row["score"], user_trust=user["trust_score"]
    )


_WITHDRAW = "DELETE FROM votes WHERE video_id = $1 AND user_id = $2"


async def withdraw_vote(conn: Connection, *, video_id: str, user_id: str) -> bool:
    """Delete the user's vote and queue the video; False when there was none (a second delete
    finds nothing, and then nothing is queued either)."""
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(_HOLD_QUEUE, video_id)
        removed = await conn.execute(_WITHDRAW, video_id, user_id) != "DELETE 0"
    except BaseException:
        await tx.rollback()
        raise
    if removed:
        await tx.commit()
    else:
        await tx.rollback()
    return removed
