"""Casting and withdrawing votes in-process, through the same store calls the API makes."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import asyncpg

from realtube_push.domain.ids import entity_hash
from realtube_push.store import votes as vote_store
from realtube_push.store.votes import VoteOutcome


async def cast(
    db: asyncpg.Pool,
    video_id: str,
    user_id: str,
    category: str = "fully_ai",
    *,
    cast_at: datetime | None = None,
    channel_id: str | None = None,
) -> VoteOutcome:
    """``store.votes.cast_vote`` on a pooled connection, as ``POST /api/votes`` calls it."""
    async with db.acquire() as conn:
        return await vote_store.cast_vote(
            conn,
            vote_store.NewVote(
                video_id=video_id,
                video_hash=entity_hash(video_id),
                user_id=user_id,
                category=category,
                cast_at=cast_at or datetime.now(UTC),
                channel_id=channel_id,
                channel_hash=entity_hash(channel_id) if channel_id else None,
                ip_hash=None,
                user_agent=None,
            ),
        )


async def cast_on_fresh_users(database_url: str, videos: list[str]) -> None:
    """One ``fully_ai`` vote per video, each by a new user, over one direct connection (the
    score worker of whichever server uses the database wakes on their NOTIFY)."""
    conn = await asyncpg.connect(database_url)
    try:
        for video in videos:
            await vote_store.cast_vote(
                conn,
                vote_store.NewVote(
                    video_id=video,
                    video_hash=entity_hash(video),
                    user_id=secrets.token_hex(32),
                    category="fully_ai",
                    cast_at=datetime.now(UTC),
                    channel_id=None,
                    channel_hash=None,
                    ip_hash=None,
                    user_agent=None,
                ),
            )
    finally:
        await conn.close()


async def withdraw(db: asyncpg.Pool, video_id: str, user_id: str) -> bool:
    """``store.votes.withdraw_vote``, as ``DELETE /api/votes`` calls it."""
    async with db.acquire() as conn:
        return await vote_store.withdraw_vote(conn, video_id=video_id, user_id=user_id)
