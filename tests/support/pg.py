"""Short-lived SQL access for tests that check what the server stored."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import asyncpg


async def fetch(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    """Run ``query`` on a fresh connection and return its rows."""
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def fetchval(database_url: str, query: str, *args: Any) -> Any:
    """The first column of the first row of ``query``."""
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def execute(database_url: str, query: str, *args: Any) -> str:
    """Run a statement; returns its status."""
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.execute(query, *args)
    finally:
        await conn.close()


async def score_queued(database_url: str, video_ids: list[str]) -> int:
    """How many of ``video_ids`` still wait in the score queue."""
    return int(
        await fetchval(
            database_url,
            "SELECT count(*) FROM score_queue WHERE video_id = ANY($1::text[])",
            video_ids,
        )
    )


async def scored(database_url: str, video_ids: list[str]) -> bool:
    """Whether the score worker has recalculated every one of ``video_ids`` (none queued)."""
    return await score_queued(database_url, video_ids) == 0


async def take_database_away(admin_database_url: str, database_url: str) -> None:
    """Make ``database_url``'s database unreachable, as an outage would: it refuses new
    sessions and its open ones are cut."""
    name = urlsplit(database_url).path.lstrip("/")
    await execute(admin_database_url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    await execute(
        admin_database_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = $1 AND pid <> pg_backend_pid()",
        name,
    )
