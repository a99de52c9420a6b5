"""Counts stay exact when many votes arrive at once (over HTTP, on many connections), and a
recalculation that runs while a vote is in flight never loses that vote."""

from __future__ import annotations

import itertools

import anyio
import httpx
import pytest

from realtube_push.domain.categories import CATEGORIES
from realtube_push.workers import score
from tests.support import ids, pg, scoring, votes
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(server):
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
        yield client


async def all_at_once(client, bodies: list[dict]) -> list[httpx.Response]:
    """POST every vote concurrently, each on its own task."""
    responses: list[httpx.Response] = []

    async def post(body: dict) -> None:
        responses.append(await client.post("/api/votes", json=body))

    async with anyio.create_task_group() as tg:
        for body in bodies:
            tg.start_soon(post, body)
    return responses


async def stored_tallies(db_url, video: str) -> dict:
    """What the database holds for the video: its vote rows and counters."""
    votes = await pg.fetch(db_url, "SELECT user_id, category FROM votes WHERE video_id = $1", video)
    categories = await pg.fetch(
        db_url,
        "SELECT category, votes FROM video_categories WHERE video_id = $1 AND votes <> 0",
        video,
    )
    total = await pg.fetchval(db_url, "SELECT total_votes FROM videos WHERE video_id = $1", video)
    return {
        "votes": [(r["user_id"], r["category"]) for r in votes],
        "categories": {r["category"]: r["votes"] for r in categories},
        "total": total,
    }


async def test_200_users_voting_at_once_are_all_counted(client, db_url):
    video = ids.video_id()
    categories = itertools.cycle(CATEGORIES)
    bodies = [
        {"videoId": video, "category": next(categories), "userId": ids.user_id()}
        for _ in range(200)
    ]

    responses = await all_at_once(client, bodies)

    assert sorted({r.status_code for r in responses}) == [200], {
        r.status_code: r.text for r in responses if r.status_code != 200
    }
    await eventually(lambda: pg.scored(db_url, [video]), timeout=10, what="video scored")
    shown = (await client.get("/api/videos", params={"videoId": video})).json()
    assert shown["totalVotes"] == 200
    assert sum(c["votes"] for c in shown["categories"].values()) == 200
    expected = {c: sum(1 for b in bodies if b["category"] == c) for c in CATEGORIES}
    assert {c: t["votes"] for c, t in shown["categories"].items()} == expected
    assert sum(t["weightedScore"] for t in shown["categories"].values()) == pytest.approx(
        100, abs=0.5
    )
    stored = await stored_tallies(db_url, video)
    assert stored["total"] == len(stored["votes"]) == 200
    assert stored["categories"] == expected


async def test_50_identical_votes_at_once_make_one_vote(client, db_url):
    video, user = ids.video_id(), ids.user_id()
    body = {"videoId": video, "category": "ai_visuals", "userId": user}

    responses = await all_at_once(client, [body] * 50)

    assert {r.status_code for r in responses} == {200}
    stored = await stored_tallies(db_url, video)
    assert stored == {"votes": [(user, "ai_visuals")], "categories": {"ai_visuals": 1}, "total": 1}
    user_votes = await pg.fetchval(db_url, "SELECT total_votes FROM users WHERE user_id = $1", user)
    assert user_votes == 1


async def test_concurrent_category_changes_leave_one_consistent_vote(client, db_url):
    video, user = ids.video_id(), ids.user_id()
    switching = itertools.cycle(["fully_ai", "ai_voiceover", "ai_thumbnails", "ai_assisted"])
    bodies = [{"videoId": video, "category": next(switching), "userId": user} for _ in range(40)]

    responses = await all_at_once(client, bodies)

    assert {r.status_code for r in responses} == {200}
    stored = await stored_tallies(db_url, video)
    [(_, category)] = stored["votes"]
    assert stored["categories"] == {category: 1}
    assert stored["total"] == 1
    await eventually(lambda: pg.scored(db_url, [video]), what="video scored")
    shown = (await client.get("/api/videos", params={"videoId": video})).json()
    assert shown["categories"] == {category: {"votes": 1, "weightedScore": 100.0}}


# The two tests below make a microsecond-wide race deterministic: a test-only trigger holds a
# vote's transaction for a moment at the point where it has touched the score queue but not
# yet the video, and a worker recalculates the video right then.


async def slow_down(services, table: str, when: str) -> None:
    """Make every ``when`` (BEFORE INSERT / AFTER DELETE) on ``table`` sleep 0.5 s."""
    await services.pool.execute(
        "CREATE FUNCTION test_pause() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN PERFORM pg_sleep(0.5); RETURN COALESCE(NEW, OLD); END $$;"
        f" CREATE TRIGGER a_test_pause {when} ON {table}"
        " FOR EACH ROW EXECUTE FUNCTION test_pause();"
    )


async def paused_in_trigger(services) -> bool:
    return bool(
        await services.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event = 'PgSleep'"
        )
    )


async def test_vote_cast_while_its_video_is_recalculated_still_counts(services):
    video = ids.video_id()
    await votes.cast(services.pool, video, ids.user_id())  # queued, not yet scored
    await slow_down(services, "videos", "BEFORE INSERT")

    async with anyio.create_task_group() as tg:
        tg.start_soon(votes.cast, services.pool, video, ids.user_id())
        await eventually(lambda: paused_in_trigger(services), what="second vote in flight")
        await score.drain(services)  # a worker's batch lands in the middle of the vote
    await score.drain(services)

    assert await scoring.stored(services.pool, [video]) == await scoring.recomputed(
        services.pool, [video]
    )


async def test_vote_withdrawn_while_its_video_is_recalculated_stops_counting(services):
    video, leaving = ids.video_id(), ids.user_id()
    await votes.cast(services.pool, video, leaving)
    await votes.cast(services.pool, video, ids.user_id(), "ai_voiceover")
    await score.drain(services)
    await votes.cast(services.pool, video, ids.user_id(), "ai_voiceover")  # queued again
    await slow_down(services, "votes", "AFTER DELETE")

    async with anyio.create_task_group() as tg:
        tg.start_soon(votes.withdraw, services.pool, video, leaving)
        await eventually(lambda: paused_in_trigger(services), what="withdrawal in flight")
        await score.drain(services)
    await score.drain(services)

    after = await scoring.stored(services.pool, [video])
    assert "fully_ai" not in after[video].categories
    assert after == await scoring.recomputed(services.pool, [video])
