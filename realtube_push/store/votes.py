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
  two never deadlock;
- the reply's score counts the vote: the cast statement also reads what the score worker
  scores the video from (its votes with their voters' ban flags, its lock, stored score and
  prior) and ``domain.scoring.score_categories`` scores them as the worker does, to the bit.
  It is what the voter is told; what is stored and published stays the worker's
  recalculation (the two differ only when other votes on the video commit in between).
  Cost: no extra round trip; the statement reads every vote on the video (one index entry
  and one voter lookup each), so a vote on a video with thousands of votes costs a few ms of
  PostgreSQL time, as that video's recalculation does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import islice

import asyncpg

from realtube_push.domain.scoring import (
    FULL_CONFIDENCE_WEIGHT,
    CategoryVotes,
    score_categories,
)
from realtube_push.domain.trust import NEW_ACCOUNT_TRUST, vote_weight
from realtube_push.store.db import Connection, end, transaction


@dataclass(frozen=True, slots=True)
class NewVote:
    """A validated vote as the client sent it (ids hashed, cast time clamped)."""

    video_id: str
    video_hash: str
    user_id: str
    category: str
    cast_at: datetime
    channel_id: str | None = None
    channel_hash: str | None = None
    ip_hash: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class VoteOutcome:
    """What the voter is told: whether the vote took effect, the video's score with this vote
    counted, and the voter's trust."""

    applied: bool
    video_score: float
    user_trust: float


# Taken first in a vote's transaction and held to commit (see the module docstring). The no-op
# update is what locks a row that is already queued; the first enqueue time is kept.
_HOLD_QUEUE = """
INSERT INTO score_queue (video_id) VALUES ($1)
ON CONFLICT (video_id) DO UPDATE SET enqueued_at = score_queue.enqueued_at
"""

# The queue hold, then the voter's row, in one round trip: the users insert reads from the
# hold, so the queue row is locked first. Every vote path locks in this order (queue rows,
# then users, then the video's rows), batches included, so none waits on another in a cycle.
_HOLD_QUEUE_AND_UPSERT_USER = f"""
WITH hold AS ({_HOLD_QUEUE} RETURNING video_id)
INSERT INTO users (user_id, trust_score) SELECT $2, $3 FROM hold
ON CONFLICT (user_id) DO UPDATE SET last_active = now()
RETURNING trust_score, is_vip, is_shadowbanned
"""

# Whether the voter of ``v`` is shadowbanned now: one primary-key probe per vote. (As a join,
# the planner hashes the whole users table once a video has a few hundred votes.)
VOTER_BANNED = "(SELECT u.is_shadowbanned FROM users u WHERE u.user_id = v.user_id)"

# The score's inputs grouped by category, from a ``counted`` relation of (category, weight,
# vip, counts) rows: per category (in name order) its votes, how many of them count (weight > 0,
# voter not shadowbanned) and the counting weights, all categories' concatenated, so that the
# sums are taken in Python (``domain.scoring.score_categories``) exactly as the worker's are.
TALLY_COUNTED = """
SELECT array_agg(category ORDER BY category) AS categories,
       array_agg(votes ORDER BY category) AS counts,
       array_agg(counting ORDER BY category) AS sizes,
       COALESCE(bool_or(vip_lock), false) AS vip_lock,
       (SELECT array_agg(weight ORDER BY category) FROM counted WHERE counts) AS weights
  FROM (SELECT category, count(*)::int AS votes, count(*) FILTER (WHERE counts)::int AS counting,
               bool_or(vip AND counts) AS vip_lock
          FROM counted GROUP BY category) AS per_category
"""


def tallied_categories(row: asyncpg.Record) -> dict[str, CategoryVotes]:
    """The categories of a ``TALLY_COUNTED`` row."""
    weights = iter(row["weights"] or ())
    return {
        category: CategoryVotes(votes, list(islice(weights, size)))
        for category, votes, size in zip(
            row["categories"] or (), row["counts"] or (), row["sizes"] or (), strict=True
        )
    }


def tallied_score(row: asyncpg.Record, full_confidence_weight: float) -> float:
    """The video's score once a vote is counted, from a ``TALLY_COUNTED`` row (the worker's
    computation on the same inputs)."""
    return score_categories(
        tallied_categories(row),
        vip_lock=row["vip_lock"],
        locked=row["locked"],
        current_score=row["score"],
        preliminary=row["preliminary"],
        full_confidence_weight=full_confidence_weight,
    ).score


# One statement: video (with the channel's auto-flag prior when new), the vote under
# last-write-wins, the IP-hash record, and what the video's score is computed from once this
# vote counts. A statement does not see its own writes, so those inputs are everyone else's
# votes as of the statement's snapshot, plus this voter's vote as it stands after it (the new
# one if applied, else the newer one already stored), plus the video row (as inserted, else as
# stored; a video created by a concurrent first vote is in neither and scores as a new one).
_CAST = f"""
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
    RETURNING score, locked, preliminary
), vote AS (
    INSERT INTO votes (video_id, user_id, category, weight, vip, cast_at, ip_hash, user_agent)
    VALUES ($1, $2, $3, $4, $10, $6, $7, $11)
    ON CONFLICT (video_id, user_id) DO UPDATE
        SET category = EXCLUDED.category, weight = EXCLUDED.weight, vip = EXCLUDED.vip,
            cast_at = EXCLUDED.cast_at, ip_hash = EXCLUDED.ip_hash,
            user_agent = EXCLUDED.user_agent, updated_at = now()
        WHERE votes.cast_at <= EXCLUDED.cast_at
    RETURNING category, weight, vip
), seen AS (
    INSERT INTO ip_hashes (ip_hash, user_id) SELECT $7, $2 WHERE $7::text IS NOT NULL
    ON CONFLICT (ip_hash, user_id) DO UPDATE
        SET votes = ip_hashes.votes + 1, last_seen = now()
), mine AS (
    SELECT category, weight, vip FROM vote
    UNION ALL
    SELECT category, weight, vip FROM votes
     WHERE video_id = $1 AND user_id = $2 AND NOT EXISTS (SELECT 1 FROM vote)
), counted AS (
    SELECT category, weight, vip, weight > 0 AND NOT $12::boolean AS counts FROM mine
    UNION ALL
    SELECT v.category, v.weight, v.vip, v.weight > 0 AND NOT {VOTER_BANNED}
      FROM votes v WHERE v.video_id = $1 AND v.user_id <> $2
), video AS (
    SELECT score, locked, preliminary FROM vid
    UNION ALL
    SELECT score, locked, preliminary FROM videos
     WHERE video_id = $1 AND NOT EXISTS (SELECT 1 FROM vid)
)
SELECT EXISTS (SELECT 1 FROM vote) AS applied,
       COALESCE((SELECT score FROM video), 0) AS score,
       COALESCE((SELECT locked FROM video), false) AS locked,
       COALESCE((SELECT preliminary FROM video), false) AS preliminary,
       tally.*
  FROM ({TALLY_COUNTED}) AS tally
"""


async def cast_vote(
    conn: Connection,
    vote: NewVote,
    *,
    full_confidence_weight: float = FULL_CONFIDENCE_WEIGHT,
) -> VoteOutcome:
    """Record (or change) a user's vote on a video and queue its recalculation, in one
    transaction; the outcome's score counts this vote (module docstring).

    The video is queued even when the vote is not applied (an older cast time): the queue row
    must be held before the outcome is known, and a recalculation of unchanged votes is
    harmless.
    """
    async with transaction(conn):
        user = await conn.fetchrow(
            _HOLD_QUEUE_AND_UPSERT_USER, vote.video_id, vote.user_id, NEW_ACCOUNT_TRUST
        )
        assert user is not None
        is_vip = bool(user["is_vip"])
        banned = bool(user["is_shadowbanned"])
        weight = vote_weight(user["trust_score"], is_vip=is_vip, is_shadowbanned=banned)
        row = await conn.fetchrow(
            _CAST,
            vote.video_id,
            vote.user_id,
            vote.category,
            weight,
            vote.channel_id,
            vote.cast_at,
            vote.ip_hash,
            vote.video_hash,
            vote.channel_hash,
            is_vip and not banned,
            vote.user_agent,
            banned,
        )
        assert row is not None
    return VoteOutcome(
        applied=row["applied"],
        video_score=tallied_score(row, full_confidence_weight),
        user_trust=user["trust_score"],
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
        await end(conn, tx, commit=False)
        raise
    await end(conn, tx, commit=removed)
    return removed
