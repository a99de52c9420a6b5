"""The Redis cache keeps its promises: no stale fill after an invalidation, Redis trouble is
a miss (the API answers from PostgreSQL), and the rate limiter fails open."""

from __future__ import annotations

import httpx
import pytest

from tests.support import ids
from tests.support.redis_server import own_redis

pytestmark = pytest.mark.anyio


async def test_a_fill_read_before_an_invalidation_is_dropped(services):
    key = services.keys.video("abc")
    seen = await services.cache.lookup(key)  # a reader misses and goes to PostgreSQL ...
    await services.cache.invalidate(videos=[("abc", "0" * 64)])  # ... a writer commits ...
    await services.cache.fill(key, {"score": 1}, 60, seen)  # ... the reader's copy is stale
    assert (await services.cache.lookup(key)).value is None


async def test_a_fill_with_no_invalidation_in_between_is_stored(services):
    key = services.keys.video("abc")
    await services.cache.invalidate(videos=[("abc", "0" * 64)])
    seen = await services.cache.lookup(key)
    await services.cache.fill(key, {"score": 1}, 60, seen)
    assert (await services.cache.lookup(key)).value == {"score": 1}


async def test_reads_and_votes_still_work_while_redis_is_down(servers, tmp_path):
    with own_redis(tmp_path) as redis:
        servers.redis_url = redis.url
        server = servers.start(RATE_LIMITS_ENABLED="true")
        video = ids.video_id()
        async with httpx.AsyncClient(base_url=server.url) as client:
            voted = await client.post(
                "/api/votes",
                json={"videoId": video, "category": "fully_ai", "userId": ids.user_id()},
            )
            assert voted.status_code == 200
            redis.stop()
            again = await client.post(
                "/api/votes",
                json={"videoId": video, "category": "ai_visuals", "userId": ids.user_id()},
            )
            read = await client.get("/api/videos", params={"videoId": video})
            ready = await client.get("/health/ready")
    assert again.status_code == 200
    assert read.status_code == 200
    assert read.json()["totalVotes"] == 2
    # still serving, so still ready: degraded, not taken out (docs/operations.md)
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
