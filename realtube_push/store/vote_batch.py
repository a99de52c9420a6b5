"""Votes cast together: one transaction, set-based, for votes that arrived within a few ms.

Promises (``store/votes.py`` holds the per-vote ones; a batch keeps every one of them):
- the outcome is the one casting the votes one by one, in the given order, would give: per
  (video, user) the latest cast time wins (a later arrival wins a tie), each vote's
  ``applied`` says whether it was applied when its turn came, counters stay exact (the row
  trigger sees one insert or update per (video, user)) and ``ip_hashes.votes`` counts every
  vote;
- every video of the batch is queued for recalculation, its queue row held from the first
  statement to commit (one NOTIFY per batch);
- locks are taken in the single-vote order, queue rows (by video id), then users (by user
  id), then the videos' rows: two batches, or a batch and a single vote, never wait on each
  other in a cycle (rows a transaction touches after its queue rows belong to videos whose
  queue rows it holds, so two transactions never both reach them);
- each outcome's score counts the whole batch (read after the writes, scored by
  ``domain.scoring.score_categories`` as the worker does).

Nothing in a batch is checked here that could fail one vote alone: votes arrive validated.
A batch that fails anyway fails whole (it rolls back); the caller retries its votes one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from realtube_push.domain.scoring import FULL_CONFIDENCE_WEIGHT
from realtube_push.domain.trust import NEW_ACCOUNT_TRUST, vote_weight
from realtube_push.store.db import Connection, transaction
from realtube_push.store.votes import (
    TALLY_COUNTED,
    VOTER_BANNED,
    NewVote,
    VoteOutcome,
    tallied_score,
)

# Queue rows first (the users insert waits for the hold to finish), each in id order.
_HOLD_QUEUES_AND_UPSERT_USERS = """
WITH hold AS (
    INSERT INTO score_queue (video_id) SELECT unnest($1::text[])
    ON CONFLICT (video_id) DO UPDATE SET enqueued_at = score_queue.enqueued_at
    RETURNING video_id
)
INSERT INTO users (user_id, trust_score)
SELECT user_id, $3 FROM unnest($2::text[]) AS u(user_id) WHERE (SELECT count(*) FROM hold) > 0
ON CONFLICT (user_id) DO UPDATE SET last_active = now()
RETURNING user_id, trust_score, is_vip, is_shadowbanned
"""

# Channels, videos, the winning vote of each (video, user), the IP-hash counts, each in key
# order; returns the stored cast times the batch's votes meet (the statement's snapshot is
# taken after the users' locks, so no other transaction changes those votes meanwhile).
_CAST_ALL = """
WITH chan AS (
    INSERT INTO channels (channel_id, channel_hash)
    SELECT * FROM unnest($1::text[], $2::text[])
    ON CONFLICT (channel_id) DO NOTHING
), vid AS (
    INSERT INTO videos (video_id, video_hash, channel_id, preliminary)
    SELECT n.video_id, n.video_hash, n.channel_id, COALESCE(
               (SELECT auto_flag_new FROM channels c WHERE c.channel_id = n.first_channel), false)
      FROM unnest($3::text[], $4::text[], $5::text[], $6::text[])
           AS n(video_id, video_hash, channel_id, first_channel)
    ON CONFLICT (video_id) DO UPDATE SET channel_id = EXCLUDED.channel_id
        WHERE EXCLUDED.channel_id IS NOT NULL
          AND videos.channel_id IS DISTINCT FROM EXCLUDED.channel_id
), vote AS (
    INSERT INTO votes (video_id, user_id, category, weight, vip, cast_at, ip_hash, user_agent)
    SELECT * FROM unnest($7::text[], $8::text[], $9::text[], $10::float8[], $11::bool[],
                         $12::timestamptz[], $13::text[], $14::text[])
    ON CONFLICT (video_id, user_id) DO UPDATE
        SET category = EXCLUDED.category, weight = EXCLUDED.weight, vip = EXCLUDED.vip,
            cast_at = EXCLUDED.cast_at, ip_hash = EXCLUDED.ip_hash,
            user_agent = EXCLUDED.user_agent, updated_at = now()
        WHERE votes.cast_at <= EXCLUDED.cast_at
), seen AS (
    INSERT INTO ip_hashes (ip_hash, user_id, votes)
    SELECT * FROM unnest($15::text[], $16::text[], $17::int[])
    ON CONFLICT (ip_hash, user_id) DO UPDATE
        SET votes = ip_hashes.votes + EXCLUDED.votes, last_seen = now()
)
SELECT o.video_id, o.user_id, o.cast_at
  FROM votes o JOIN unnest($7::text[], $8::text[]) AS k(video_id, user_id)
       USING (video_id, user_id)
"""

# After the writes: each video's score inputs (the same as the single vote's, see
# TALLY_COUNTED), this transaction's votes included.
_TALLIES = f"""
SELECT b.video_id, vid.score, vid.locked, vid.preliminary, tally.*
  FROM unnest($1::text[]) AS b(video_id)
  JOIN videos vid ON vid.video_id = b.video_id
  CROSS JOIN LATERAL (
      WITH counted AS (
          SELECT v.category, v.weight, v.vip, v.weight > 0 AND NOT {VOTER_BANNED} AS counts
            FROM votes v WHERE v.video_id = b.video_id
      ) {TALLY_COUNTED}
  ) AS tally
"""

_Key = tuple[str, str]  # (video_id, user_id)


async def cast_votes(
    conn: Connection,
    votes: Sequence[NewVote],
    *,
    full_confidence_weight: float = FULL_CONFIDENCE_WEIGHT,
) -> list[VoteOutcome]:
    """Record ``votes`` in one transaction, as casting them one by one in this order would;
    returns each vote's outcome, in the same order. Raises (and writes nothing) if any
    statement fails."""
    video_ids = sorted({v.video_id for v in votes})
    user_ids = sorted({v.user_id for v in votes})
    async with transaction(conn):
        users = {
            r["user_id"]: r
            for r in await conn.fetch(
                _HOLD_QUEUES_AND_UPSERT_USERS, video_ids, user_ids, NEW_ACCOUNT_TRUST
            )
        }
        stored = {
            (r["video_id"], r["user_id"]): r["cast_at"]
            for r in await conn.fetch(_CAST_ALL, *_cast_arguments(votes, users))
        }
        tallies = await conn.fetch(_TALLIES, video_ids)
    scores = {r["video_id"]: tallied_score(r, full_confidence_weight) for r in tallies}
    return [
        VoteOutcome(applied, scores[vote.video_id], users[vote.user_id]["trust_score"])
        for vote, applied in zip(votes, _applied_in_turn(votes, stored), strict=True)
    ]


def _applied_in_turn(votes: Sequence[NewVote], stored: dict[_Key, datetime]) -> list[bool]:
    """Whether each vote is applied when cast in order after the stored ones (the store's
    rule: a vote applies unless the vote it meets was cast later)."""
    latest = dict(stored)
    applied = []
    for vote in votes:
        key = (vote.video_id, vote.user_id)
        current = latest.get(key)
        wins = current is None or current <= vote.cast_at
        if wins:
            latest[key] = vote.cast_at
        applied.append(wins)
    return applied


def _cast_arguments(votes: Sequence[NewVote], users: dict[str, asyncpg.Record]) -> list[object]:
    """The arrays ``_CAST_ALL`` takes: channels, videos, winning votes, IP-hash counts."""
    channels: dict[str, str] = {}
    videos: dict[str, tuple[str, str | None, str | None]] = {}  # hash, last channel, first's
    winners: dict[_Key, NewVote] = {}
    seen: dict[tuple[str, str], int] = {}
    for vote in votes:
        if vote.channel_id is not None and vote.channel_hash is not None:
            channels[vote.channel_id] = vote.channel_hash
        known = videos.get(vote.video_id)
        if known is None:
            videos[vote.video_id] = (vote.video_hash, vote.channel_id, vote.channel_id)
        elif vote.channel_id is not None:
            videos[vote.video_id] = (known[0], vote.channel_id, known[2])
        key = (vote.video_id, vote.user_id)
        winner = winners.get(key)
        if winner is None or winner.cast_at <= vote.cast_at:
            winners[key] = vote
        if vote.ip_hash is not None:
            seen[(vote.ip_hash, vote.user_id)] = seen.get((vote.ip_hash, vote.user_id), 0) + 1

    chan_ids = sorted(channels)
    video_ids = sorted(videos)
    keys = sorted(winners)
    cast = [winners[k] for k in keys]
    weights, vips = [], []
    for vote in cast:
        user = users[vote.user_id]
        banned, is_vip = bool(user["is_shadowbanned"]), bool(user["is_vip"])
        weights.append(vote_weight(user["trust_score"], is_vip=is_vip, is_shadowbanned=banned))
        vips.append(is_vip and not banned)
    seen_keys = sorted(seen)
    return [
        chan_ids,
        [channels[c] for c in chan_ids],
        video_ids,
        [videos[v][0] for v in video_ids],
        [videos[v][1] for v in video_ids],
        [videos[v][2] for v in video_ids],
        [k[0] for k in keys],
        [k[1] for k in keys],
        [v.category for v in cast],
        weights,
        vips,
        [v.cast_at for v in cast],
        [v.ip_hash for v in cast],
        [v.user_agent for v in cast],
        [k[0] for k in seen_keys],
        [k[1] for k in seen_keys],
        [seen[k] for k in seen_keys],
    ]
