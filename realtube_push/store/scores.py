"""The score queue and the set-based reads/writes of a recalculation batch.

A batch is claimed with ``FOR UPDATE SKIP LOCKED`` and its queue rows are deleted in the
same transaction that writes the new scores: two workers never take the same video, and a
worker that dies mid-batch leaves its rows queued for the next one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from realtube_push.store.db import Connection, Executor


@dataclass(slots=True)
class VideoForScoring:
    """A claimed video as stored, with its votes and current category rows."""

    video_id: str
    video_hash: str
    channel_id: str | None
    score: float
    locked: bool
    hidden: bool
    shadow_hidden: bool
    preliminary: bool
    total_votes: int
    # (category, weight, vip, voter_shadowbanned)
    votes: list[tuple[str, float, bool, bool]] = field(default_factory=list)
    # category -> (votes, weighted_score)
    categories: dict[str, tuple[int, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScoreWrite:
    """A new score for one video: category weighted scores replace the stored ones."""

    video_id: str
    score: float
    locked: bool
    weighted_scores: dict[str, float]


_CLAIM = """
DELETE FROM score_queue WHERE video_id IN (
    SELECT video_id FROM score_queue ORDER BY enqueued_at LIMIT $1 FOR UPDATE SKIP LOCKED
) RETURNING video_id
"""


async def claim_batch(conn: Connection, limit: int) -> list[str]:
    """Take up to ``limit`` queued videos; only valid inside the batch's transaction."""
    return [r["video_id"] for r in await conn.fetch(_CLAIM, limit)]


async def queue_length(conn: Executor) -> int:
    """How many videos wait for recalculation."""
    return int(await conn.fetchval("SELECT count(*) FROM score_queue"))


async def oldest_queued_age(conn: Executor) -> float:
    """Seconds the oldest queued video has waited (0 when the queue is empty)."""
    age = await conn.fetchval(
        "SELECT extract(epoch FROM now() - min(enqueued_at)) FROM score_queue"
    )
    return float(age or 0.0)


async def enqueue(conn: Executor, video_ids: Sequence[str]) -> None:
    """Queue videos for recalculation (admin actions, trust changes)."""
    await conn.execute(
        "INSERT INTO score_queue (video_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
        list(video_ids),
    )


async def load_batch(conn: Connection, video_ids: Sequence[str]) -> list[VideoForScoring]:
    """Lock and read the videos, their votes and category rows (three set-based reads)."""
    ids = list(video_ids)
    rows = await conn.fetch(
        "SELECT video_id, video_hash, channel_id, score, locked, hidden, shadow_hidden,"
        " preliminary, total_votes FROM videos WHERE video_id = ANY($1::text[])"
        " ORDER BY video_id FOR UPDATE",
        ids,
    )
    videos = {r["video_id"]: VideoForScoring(**dict(r)) for r in rows}
    for r in await conn.fetch(
        "SELECT v.video_id, v.category, v.weight, v.vip, u.is_shadowbanned"
        " FROM votes v JOIN users u ON u.user_id = v.user_id WHERE v.video_id = ANY($1::text[])",
        ids,
    ):
        videos[r["video_id"]].votes.append(
            (r["category"], r["weight"], r["vip"], r["is_shadowbanned"])
        )
    for r in await conn.fetch(
        "SELECT video_id, category, votes, weighted_score FROM video_categories"
        " WHERE video_id = ANY($1::text[])",
        ids,
    ):
        videos[r["video_id"]].categories[r["category"]] = (r["votes"], r["weighted_score"])
    return list(videos.values())


async def write_scores(conn: Connection, writes: Sequence[ScoreWrite]) -> datetime:
    """Store the batch's scores in two statements; returns the update time used."""
    now: datetime = await conn.fetchval("SELECT now()")
    await conn.execute(
        "UPDATE videos v SET score = s.score, locked = s.locked, last_updated = $4"
        " FROM unnest($1::text[], $2::float8[], $3::bool[]) AS s(video_id, score, locked)"
        " WHERE v.video_id = s.video_id",
        [w.video_id for w in writes],
        [w.score for w in writes],
        [w.locked for w in writes],
        now,
    )
    cat_rows: dict[str, list[Any]] = defaultdict(list)
    for w in writes:
        for category, weighted in w.weighted_scores.items():
            cat_rows["video_id"].append(w.video_id)
            cat_rows["category"].append(category)
            cat_rows["weighted"].append(weighted)
    # Categories absent from a write have no votes left: their weighted score drops to 0.
    await conn.execute(
        "UPDATE video_categories c SET weighted_score = COALESCE(s.weighted, 0)"
        " FROM (SELECT c2.video_id, c2.category, n.weighted FROM video_categories c2"
        "       LEFT JOIN unnest($2::text[], $3::text[], $4::float8[]) AS n(video_id, category,"
        "       weighted) ON n.video_id = c2.video_id AND n.category = c2.category"
        "       WHERE c2.video_id = ANY($1::text[])) AS s"
        " WHERE c.video_id = s.video_id AND c.category = s.category"
        "   AND c.weighted_score IS DISTINCT FROM COALESCE(s.weighted, 0)",
        [w.video_id for w in writes],
        cat_rows["video_id"],
        cat_rows["category"],
        cat_rows["weighted"],
    )
    return now


async def enqueue_channels(conn: Connection, channel_ids: Sequence[str]) -> None:
    """Queue channels for aggregation (their videos changed)."""
    if channel_ids:
        await conn.execute(
            "INSERT INTO channel_queue (channel_id) SELECT unnest($1::text[])"
            " ON CONFLICT DO NOTHING",
            list(set(channel_ids)),
        )
