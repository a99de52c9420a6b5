"""What the score worker should have stored, recomputed from the votes table, and what it did.

The recomputation goes through ``domain.scoring.score_video`` exactly as the worker's inputs
are defined (snapshotted weights, shadowbanned voters weighing 0), so a difference means the
stored state drifted from the votes, not that two formulas disagree.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import asyncpg

from realtube_push.domain.scoring import FULL_CONFIDENCE_WEIGHT, CastVote, score_video


@dataclass(frozen=True)
class VideoState:
    """A video's score, vote count and ``{category: (votes, weightedScore)}``."""

    score: float
    total_votes: int
    categories: dict[str, tuple[int, float]]


async def recomputed(
    db: asyncpg.Pool | asyncpg.Connection,
    video_ids: list[str],
    *,
    full_confidence_weight: float = FULL_CONFIDENCE_WEIGHT,
) -> dict[str, VideoState]:
    """Each video's state as ``score_video`` computes it from the votes stored now."""
    videos = await db.fetch(
        "SELECT video_id, score, locked, preliminary FROM videos WHERE video_id = ANY($1::text[])",
        video_ids,
    )
    votes: dict[str, list[CastVote]] = defaultdict(list)
    for r in await db.fetch(
        "SELECT v.video_id, v.category, v.weight, v.vip, u.is_shadowbanned FROM votes v"
        " JOIN users u USING (user_id) WHERE v.video_id = ANY($1::text[])",
        video_ids,
    ):
        weight = 0.0 if r["is_shadowbanned"] else r["weight"]
        votes[r["video_id"]].append(CastVote(r["category"], weight, r["vip"]))
    states = {}
    for v in videos:
        result = score_video(
            votes[v["video_id"]],
            locked=v["locked"],
            current_score=v["score"],
            preliminary=v["preliminary"],
            full_confidence_weight=full_confidence_weight,
        )
        states[v["video_id"]] = VideoState(
            score=result.score,
            total_votes=result.total_votes,
            categories={c: (t.votes, t.weighted_score) for c, t in result.categories.items()},
        )
    return states


async def stored(
    db: asyncpg.Pool | asyncpg.Connection, video_ids: list[str]
) -> dict[str, VideoState]:
    """Each video's state as stored (category rows with no votes and no weight left out)."""
    categories: dict[str, dict[str, tuple[int, float]]] = defaultdict(dict)
    for r in await db.fetch(
        "SELECT video_id, category, votes, weighted_score FROM video_categories"
        " WHERE video_id = ANY($1::text[]) AND (votes <> 0 OR weighted_score <> 0)",
        video_ids,
    ):
        categories[r["video_id"]][r["category"]] = (r["votes"], r["weighted_score"])
    return {
        r["video_id"]: VideoState(r["score"], r["total_votes"], categories[r["video_id"]])
        for r in await db.fetch(
            "SELECT video_id, score, total_votes FROM videos WHERE video_id = ANY($1::text[])",
            video_ids,
        )
    }
