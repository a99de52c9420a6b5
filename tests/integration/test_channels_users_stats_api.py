"""GET /api/channels/{id}, GET /api/users/{id} and GET /api/stats as the contract describes them."""

from __future__ import annotations

import httpx
import pytest

from tests.support import ids, pg
from tests.support.api import vote
from tests.support.polling import eventually

# no channel debounce: a channel is aggregated as soon as its videos are scored
pytestmark = [pytest.mark.anyio, pytest.mark.server_env(CHANNEL_DEBOUNCE_SECONDS="0")]


async def test_channel_with_three_voted_videos_is_aggregated(client, server):
    channel = ids.channel_id()
    videos = [ids.video_id() for _ in range(3)]
    for video in videos:
        for _ in range(3):
            await vote(client, video, category="fully_ai", channelId=channel)
    database_url = server.env["DATABASE_URL"]
    await eventually(
        lambda: pg.fetchval(
            database_url, "SELECT total_videos = 3 FROM channels WHERE channel_id = $1", channel
        ),
        what="channel aggregated",
    )

    r = await client.get(f"/api/channels/{channel}")

    assert r.status_code == 200
    body = r.json()
    assert set(body) == {
        "channelId", "score", "totalVideos", "flaggedVideos", "topCategories", "locked",
        "autoFlag", "lastUpdated",
    }  # fmt: skip
    assert body["channelId"] == channel
    assert body["totalVideos"] == 3
    assert body["topCategories"] == ["fully_ai"]
    assert body["locked"] is False
    assert body["autoFlag"] is False
    assert body["lastUpdated"].endswith("Z")


async def test_unknown_channel_is_404(client):
    r = await client.get(f"/api/channels/{ids.channel_id()}")

    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("bad", ["bad%20id", "x" * 33, "caf%C3%A9"])
async def test_invalid_channel_id_is_400(client, bad):
    r = await client.get(f"/api/channels/{bad}")

    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_FIELD"


async def test_unknown_valid_user_is_created_with_defaults(client, server):
    user = ids.user_id()

    r = await client.get(f"/api/users/{user}")

    assert r.status_code == 200
    assert r.json() == {
        "userId": user,
        "trustScore": 0.25,
        "totalVotes": 0,
        "accuracyRate": 0.5,
        "accountAge": 0,
        "isVip": False,
    }
    database_url = server.env["DATABASE_URL"]
    assert await pg.fetchval(database_url, "SELECT count(*) FROM users WHERE user_id = $1", user)


async def test_user_counts_their_votes(client):
    user = ids.user_id()
    await vote(client, ids.video_id(), user_id=user)
    await vote(client, ids.video_id(), user_id=user)

    r = await client.get(f"/api/users/{user}")

    assert r.json()["totalVotes"] == 2


@pytest.mark.parametrize("bad", ["ABCDEF", "xyz", "a" * 65, "ab%20cd"])
async def test_invalid_user_id_is_400(client, bad):
    r = await client.get(f"/api/users/{bad}")

    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_FIELD"


async def test_stats_of_a_fresh_database_are_zero(servers):
    server = servers.start()
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.get("/api/stats")

    assert r.status_code == 200
    assert r.json() == {
        "totalVideos": 0,
        "totalChannels": 0,
        "totalVotes": 0,
        "totalUsers": 0,
        "activeUsers24h": 0,
        "topCategories": {},
    }


async def test_stats_count_videos_channels_votes_users_and_categories(servers):
    server = servers.start()
    channel = ids.channel_id()
    first, second = ids.video_id(), ids.video_id()
    alice, bob, carol = ids.user_id(), ids.user_id(), ids.user_id()
    async with httpx.AsyncClient(base_url=server.url) as client:
        await vote(client, first, user_id=alice, category="fully_ai", channelId=channel)
        await vote(client, first, user_id=bob, category="fully_ai", channelId=channel)
        await vote(client, second, user_id=carol, category="ai_voiceover", channelId=channel)
        await vote(client, second, user_id=alice, category="ai_visuals")
        await vote(client, second, user_id=alice, category="fully_ai")  # a change, not a vote

        r = await client.get("/api/stats")

    assert r.status_code == 200
    body = r.json()
    assert body == {
        "totalVideos": 2,
        "totalChannels": 1,
        "totalVotes": 4,
        "totalUsers": 3,
        "activeUsers24h": 3,
        "topCategories": {"fully_ai": 3, "ai_voiceover": 1},
    }
