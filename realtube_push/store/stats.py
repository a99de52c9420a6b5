"""Totals for ``GET /api/stats``."""

from __future__ import annotations

from typing import Any

from realtube_push.store.db import Executor

_TOTALS = """
SELECT (SELECT count(*) FROM videos WHERE total_votes > 0) AS total_videos,
       (SELECT count(*) FROM channels) AS total_channels,
       (SELECT count(*) FROM votes) AS total_votes,
       (SELECT count(*) FROM users) AS total_users,
       (SELECT count(*) FROM users WHERE last_active > now() - interval '24 hours') AS active_24h
"""


async def totals(conn: Executor) -> dict[str, Any]:
    """The stats object of the contract."""
    row = await conn.fetchrow(_TOTALS)
    assert row is not None
    cats = await conn.fetch(
        "SELECT category, sum(votes)::bigint AS n FROM video_categories"
        " GROUP BY category HAVING sum(votes) > 0 ORDER BY n DESC, category"
    )
    return {
        "totalVideos": row["total_videos"],
        "totalChannels": row["total_channels"],
        "totalVotes": row["total_votes"],
        "totalUsers": row["total_users"],
        "activeUsers24h": row["active_24h"],
        "topCategories": {r["category"]: r["n"] for r in cats},
    }


async def ping(conn: Executor) -> None:
    """A round trip to the database (readiness check)."""
    await conn.fetchval("SELECT 1")
