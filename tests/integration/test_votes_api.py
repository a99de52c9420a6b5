"""POST/DELETE /api/votes as the contract describes them, against a real server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from realtube_push.store import admin as admin_store
from realtube_push.workers import score
from tests.support import ids, pg, scoring, votes
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio


@pytest.fixture
def server(servers, request):
    """A server; a test marked ``on_both_vote_paths`` gets one per VOTE_BATCH_MS."""
    window = getattr(request, "param", None)
    return servers.start(**({} if window is None else {"VOTE_BATCH_MS": window}))


# each vote its own transaction, and votes committed in batches
on_both_vote_paths = pytest.mark.parametrize(
    "server", ["0", "5"], ids=["one_transaction_each", "batched"], indirect=True
)


async def vote(client: httpx.AsyncClient, **body: object) -> httpx.Response:
    return await client.post("/api/votes", json=body)


async def test_vote_is_acknowledged_with_score_trust_and_applied(server):
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await vote(client, videoId=ids.video_id(), category="fully_ai", userId=ids.user_id())
    assert r.status_code == 200
    body = r.json()
    assert body["success"] is True
    assert body["applied"] is True
    assert body["userTrust"] == pytest.approx(0.25)
    assert isinstance(body["newScore"], float | int)


async def settled_score(client: httpx.AsyncClient, database_url: str, video: str) -> float:
    """The video's score as ``GET /api/videos?videoId=`` shows it once the worker is done."""
    await eventually(lambda: pg.scored(database_url, [video]), what="video scored")
    r = await client.get("/api/videos", params={"videoId": video})
    assert r.status_code == 200, r.text
    return float(r.json()["score"])


@on_both_vote_paths
async def test_first_vote_on_a_new_video_replies_the_score_it_settles_at(server, database_url):
    video = ids.video_id()
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await vote(client, videoId=video, category="fully_ai", userId=ids.user_id())
        shown = await settled_score(client, database_url, video)

    assert shown > 0
    assert r.json()["newScore"] == shown


@on_both_vote_paths
async def test_vote_changing_the_category_replies_the_score_it_settles_at(server, database_url):
    video, first, second = ids.video_id(), ids.user_id(), ids.user_id()
    async with httpx.AsyncClient(base_url=server.url) as client:
        await vote(client, videoId=video, category="fully_ai", userId=first)
        await vote(client, videoId=video, category="fully_ai", userId=second)
        before = await settled_score(client, database_url, video)
        r = await vote(client, videoId=video, category="ai_voiceover", userId=second)
        shown = await settled_score(client, database_url, video)

    assert shown != before  # 100 % of the weight on one category became 50 %
    assert r.json()["newScore"] == shown


@on_both_vote_paths
async def test_vote_on_a_locked_video_replies_the_locked_score(server, database_url):
    video = ids.video_id()
    async with httpx.AsyncClient(base_url=server.url) as client:
        await vote(client, videoId=video, category="fully_ai", userId=ids.user_id())
        locked_at = await settled_score(client, database_url, video)
        conn = await asyncpg.connect(database_url)
        try:
            await admin_store.set_video_flag(
                conn, video, flag="locked", value=True, action="lock", reason="test"
            )
        finally:
            await conn.close()
        await settled_score(client, database_url, video)
        r = await vote(client, videoId=video, category="fully_ai", userId=ids.user_id())
        shown = await settled_score(client, database_url, video)

    assert shown == locked_at  # two votes would score 16.7: the lock holds the score
    assert r.json()["newScore"] == shown


async def test_reply_score_weighs_banned_voters_and_vip_locks_as_the_worker_does(services):
    video, banned, kept, vip = ids.video_id(), ids.user_id(), ids.user_id(), ids.user_id()
    await votes.cast(services.pool, video, banned)
    await votes.cast(services.pool, video, kept)
    await score.drain(services)
    await services.pool.execute(
        "UPDATE users SET is_shadowbanned = true WHERE user_id = $1", banned
    )

    changed = await votes.cast(services.pool, video, ids.user_id(), "ai_voiceover")
    await score.drain(services)
    after_ban = (await scoring.stored(services.pool, [video]))[video].score
    await services.pool.execute(
        "INSERT INTO users (user_id, trust_score, is_vip) VALUES ($1, 0.5, true)", vip
    )
    locking = await votes.cast(services.pool, video, vip, "ai_visuals")
    await score.drain(services)
    after_vip = (await scoring.stored(services.pool, [video]))[video].score

    assert changed.video_score == after_ban == 8.3  # the banned vote weighs 0: 50 % x 0.5 / 3
    assert locking.video_score == after_vip == 95.0


@on_both_vote_paths
async def test_voting_again_changes_the_category_and_never_stacks(server, database_url):
    video, user = ids.video_id(), ids.user_id()
    async with httpx.AsyncClient(base_url=server.url) as client:
        await vote(client, videoId=video, category="fully_ai", userId=user)
        await vote(client, videoId=video, category="ai_voiceover", userId=user)
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT category FROM votes WHERE video_id = $1", video)
        counts = dict(
            await conn.fetch(
                "SELECT category, votes FROM video_categories WHERE video_id = $1", video
            )
        )
        total = await conn.fetchval("SELECT total_votes FROM videos WHERE video_id = $1", video)
    finally:
        await conn.close()
    assert [r["category"] for r in rows] == ["ai_voiceover"]
    assert counts == {"fully_ai": 0, "ai_voiceover": 1}
    assert total == 1


@on_both_vote_paths
async def test_older_queued_vote_is_acknowledged_but_not_applied(server, database_url):
    video, user = ids.video_id(), ids.user_id()
    now = datetime.now(UTC)
    async with httpx.AsyncClient(base_url=server.url) as client:
        newer = await vote(
            client,
            videoId=video,
            category="ai_visuals",
            userId=user,
            timestamp=(now - timedelta(minutes=1)).isoformat(),
        )
        older = await vote(
            client,
            videoId=video,
            category="fully_ai",
            userId=user,
            timestamp=int((now - timedelta(hours=2)).timestamp() * 1000),
        )
    assert newer.json()["applied"] is True
    assert older.status_code == 200
    assert older.json()["applied"] is False
    conn = await asyncpg.connect(database_url)
    try:
        category = await conn.fetchval(
            "SELECT category FROM votes WHERE video_id = $1 AND user_id = $2", video, user
        )
    finally:
        await conn.close()
    assert category == "ai_visuals"


async def test_cast_time_far_in_the_future_counts_as_now(server, database_url):
    video, user = ids.video_id(), ids.user_id()
    future = datetime.now(UTC) + timedelta(days=3)
    async with httpx.AsyncClient(base_url=server.url) as client:
        await vote(
            client, videoId=video, category="fully_ai", userId=user, timestamp=future.isoformat()
        )
        # cast "now" a little later: must win, which it could not if the future time had stuck
        later = await vote(client, videoId=video, category="ai_assisted", userId=user)
    assert later.json()["applied"] is True
    conn = await asyncpg.connect(database_url)
    try:
        cast_at = await conn.fetchval("SELECT cast_at FROM votes WHERE video_id = $1", video)
    finally:
        await conn.close()
    assert cast_at < datetime.now(UTC) + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"category": "fully_ai", "userId": "ab"}, "INVALID_FIELD"),
        ({"videoId": "bad id!", "category": "fully_ai", "userId": "ab"}, "INVALID_FIELD"),
        ({"videoId": "x" * 17, "category": "fully_ai", "userId": "ab"}, "INVALID_FIELD"),
        ({"videoId": "abc", "category": "fully_ai", "userId": "ABC"}, "INVALID_FIELD"),
        ({"videoId": "abc", "category": "fully_ai", "userId": "a" * 65}, "INVALID_FIELD"),
        ({"videoId": "abc", "category": "deepfake", "userId": "ab"}, "INVALID_CATEGORY"),
        ({"videoId": "abc", "category": 3, "userId": "ab"}, "INVALID_CATEGORY"),
        ({"videoId": 123, "category": "fully_ai", "userId": "ab"}, "INVALID_FIELD"),
        (
            {"videoId": "abc", "category": "fully_ai", "userId": "ab", "admin": True},
            "INVALID_FIELD",
        ),
        (
            {"videoId": "abc", "category": "fully_ai", "userId": "ab", "timestamp": "yesterday"},
            "INVALID_FIELD",
        ),
        (
            {"videoId": "abc", "category": "fully_ai", "userId": "ab", "timestamp": True},
            "INVALID_FIELD",
        ),
        (
            {"videoId": "abc", "category": "fully_ai", "userId": "ab", "channelId": "x y"},
            "INVALID_FIELD",
        ),
        (
            {"videoId": "abc'; DROP TABLE votes;--", "category": "fully_ai", "userId": "ab"},
            "INVALID_FIELD",
        ),
    ],
)
async def test_bad_vote_is_a_400_in_the_error_format_and_writes_nothing(
    server, database_url, body, code
):
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.post("/api/votes", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]
    await assert_nothing_written(database_url)


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b'{"videoId": "abc", "category": "fully_ai", "userId": "ab"', {}),
        (b'{"videoId": "ab\xff\xfe", "category": "fully_ai", "userId": "ab"}', {}),
        (b"[1, 2, 3]", {}),
        (b"null", {}),
        (b"videoId=abc&category=fully_ai", {"Content-Type": "application/x-www-form-urlencoded"}),
        (b"", {}),
    ],
)
async def test_malformed_body_is_a_400_and_writes_nothing(server, database_url, content, headers):
    headers = {"Content-Type": "application/json", **headers}
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.post("/api/votes", content=content, headers=headers)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_FIELD"
    await assert_nothing_written(database_url)


async def test_huge_body_is_413_payload_too_large(server, database_url):
    body = {"videoId": "abc", "category": "fully_ai", "userId": "ab", "userAgent": "x" * 100_000}
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.post("/api/votes", json=body)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    await assert_nothing_written(database_url)


async def test_user_agent_is_trimmed_and_cut_to_128_chars(server, database_url):
    video = ids.video_id()
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await vote(
            client,
            videoId=video,
            category="fully_ai",
            userId=ids.user_id(),
            userAgent="  " + "ä" * 300 + "  ",
        )
    assert r.status_code == 200
    conn = await asyncpg.connect(database_url)
    try:
        agent = await conn.fetchval("SELECT user_agent FROM votes WHERE video_id = $1", video)
    finally:
        await conn.close()
    assert agent == "ä" * 128


async def test_delete_removes_the_vote_and_a_second_delete_is_404(server, database_url):
    video, user = ids.video_id(), ids.user_id()
    async with httpx.AsyncClient(base_url=server.url) as client:
        await vote(client, videoId=video, category="fully_ai", userId=user)
        first = await client.request(
            "DELETE", "/api/votes", json={"videoId": video, "userId": user}
        )
        second = await client.request(
            "DELETE", "/api/votes", json={"videoId": video, "userId": user}
        )
    assert first.status_code == 200
    assert first.json() == {"success": True}
    assert second.status_code == 404
    assert second.json()["error"]["code"] == "NOT_FOUND"
    conn = await asyncpg.connect(database_url)
    try:
        total = await conn.fetchval("SELECT total_votes FROM videos WHERE video_id = $1", video)
    finally:
        await conn.close()
    assert total == 0


async def test_delete_with_bad_fields_is_400(server):
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.request("DELETE", "/api/votes", json={"videoId": "abc"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_FIELD"


async def assert_nothing_written(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM votes) AS votes, (SELECT count(*) FROM users) AS users,"
            " (SELECT count(*) FROM videos) AS videos, (SELECT count(*) FROM score_queue) AS q"
        )
    finally:
        await conn.close()
    assert dict(counts) == {"votes": 0, "users": 0, "videos": 0, "q": 0}
