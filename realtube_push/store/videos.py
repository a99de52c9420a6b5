"""Video reads for the REST API (writes happen in votes, scores and admin)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from realtube_push.store.db import Executor


@dataclass(frozen=True, slots=True)
class VideoRow:
    """A stored video with its category tallies and its channel's score."""

    video_id: str
    score: float
    channel_id: str | None
    channel_score: float | None
    locked: bool
    total_votes: int
    last_updated: datetime
    categories: dict[str, tuple[int, float]]


_SELECT = """
SELECT v.video_id, v.score, v.channel_id, c.score AS channel_score, v.locked, v.total_votes,
       v.last_updated,
       (SELECT coalesce(array_agg(ROW(vc.category, vc.votes, vc.weighted_score)), '{}')
          FROM video_categories vc WHERE vc.video_id = v.video_id AND vc.votes > 0) AS cats
FROM videos v LEFT JOIN channels c ON c.channel_id = v.channel_id
"""


def _row(r: asyncpg.Record) -> VideoRow:
    return VideoRow(
        video_id=r["video_id"],
        score=r["score"],
        channel_id=r["channel_id"],
        channel_score=r["channel_score"],
        locked=r["locked"],
        total_votes=r["total_votes"],
        last_updated=r["last_updated"],
        categories={c[0]: (c[1], c[2]) for c in r["cats"]},
    )


async def by_hash_range(conn: Executor, lo: str, hi: str) -> list[VideoRow]:
    """Visible videos whose hash is in [lo, hi): an index range scan on ``videos_hash_idx``."""
    rows = await conn.fetch(
        _SELECT + " WHERE v.video_hash >= $1 AND v.video_hash < $2"
        " AND NOT v.hidden AND NOT v.shadow_hidden AND v.total_votes > 0 ORDER BY v.video_hash",
        lo,
        hi,
    )
    return [_row(r) for r in rows]


async def by_id(conn: Executor, video_id: str) -> VideoRow | None:
    """One visible, tracked video (as the prefix lookup sees it), or None."""
    row = await conn.fetchrow(
        _SELECT + " WHERE v.video_id = $1 AND NOT v.hidden AND NOT v.shadow_hidden"
        " AND v.total_votes > 0",
        video_id,
    )
    return None if row is None else _row(row)
