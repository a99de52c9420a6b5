"""Client-side helpers: what an extension sends, spelled once."""

from __future__ import annotations

import httpx

from realtube_push.domain.ids import entity_hash
from tests.support import ids


async def vote(
    client: httpx.AsyncClient,
    video_id: str,
    *,
    user_id: str | None = None,
    category: str = "fully_ai",
    **extra: object,
) -> httpx.Response:
    """POST /api/votes; a fresh user unless one is given. Fails unless the vote succeeded."""
    body = {"videoId": video_id, "category": category, "userId": user_id or ids.user_id()}
    r = await client.post("/api/votes", json={**body, **extra})
    assert r.status_code == 200, r.text
    return r


def prefix(video_id: str, length: int = 8) -> str:
    """The first ``length`` hex digits of SHA-256(videoId): what a client looks up."""
    return entity_hash(video_id)[:length]
