"""Votes committed in batches (VOTE_BATCH_MS > 0) keep every promise of the single-vote path:
exact counts under real concurrency, the latest cast time wins inside a batch, a reply means
the vote is durable, and a vote that cannot be stored fails alone."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import anyio
import anyio.lowlevel
import asyncpg
import httpx
import pytest

from realtube_push.config import Settings
from realtube_push.domain.categories import CATEGORIES
from realtube_push.domain.ids import entity_hash
from realtube_push.services import Services, open_services
from realtube_push.store.votes import NewVote
from tests.support import ids, pg
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio

BATCHED = {"VOTE_BATCH_MS": "5"}


@contextlib.asynccontextmanager
async def batching_services(settings: Settings, window_ms: int) -> AsyncIterator[Services]:
    """Services whose vote writer batches with ``window_ms``, its loop running."""
    async with (
        open_services(settings.model_copy(update={"vote_batch_ms": window_ms})) as svc,
        anyio.create_task_group() as tg,
    ):
        await tg.start(svc.votes.run)
        yield svc
        tg.cancel_scope.cancel()


def new_vote(video: str, user: str, category: str = "fully_ai", **extra: object) -> NewVote:
    fields: dict[str, object] = {"cast_at": datetime.now(UTC), **extra}
    return NewVote(
        video_id=video,
        video_hash=entity_hash(video),
        user_id=user,
        category=category,
        **fields,  # type: ignore[arg-type]
    )


def batches(svc: Services) -> float:
    """How many batch transactions the writer has committed (or tried)."""
    return svc.metrics.registry.get_sample_value("realtube_vote_batch_size_count") or 0.0


async def cast_together(svc: Services, votes: list[NewVote]) -> list[object]:
    """Cast every vote concurrently, in list order; each slot gets an outcome or an error."""
    results: list[object] = [None] * len(votes)

    async def cast(i: int, vote: NewVote) -> None:
        try:
            results[i] = await svc.votes.cast(vote)
        except Exception as exc:
            results[i] = exc

    async with anyio.create_task_group() as tg:
        for i, vote in enumerate(votes):
            tg.start_soon(cast, i, vote)
            await anyio.lowlevel.checkpoint()  # arrival order = list order
    return results


async def post_all(server, bodies: list[dict]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
    responses: list[httpx.Response] = []
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:

        async def post(body: dict) -> None:
            responses.append(await client.post("/api/votes", json=body))

        async with anyio.create_task_group() as tg:
            for body in bodies:
                tg.start_soon(post, body)
    return responses


async def metric(server, name: str) -> float:
    async with httpx.AsyncClient(base_url=server.url) as client:
        text = (await client.get("/metrics")).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


async def test_300_concurrent_voters_in_batches_are_counted_exactly(servers, database_url):
    server = servers.start(**BATCHED)
    shared = ids.video_id()
    categories = itertools.cycle(CATEGORIES)
    on_shared = [
        {"videoId": shared, "category": next(categories), "userId": ids.user_id()}
        for _ in range(150)
    ]
    elsewhere = [
        {"videoId": ids.video_id(), "category": "fully_ai", "userId": ids.user_id()}
        for _ in range(150)
    ]

    responses = await post_all(server, on_shared + elsewhere)

    assert sorted({r.status_code for r in responses}) == [200], {
        r.status_code: r.text for r in responses if r.status_code != 200
    }
    assert all(r.json()["applied"] for r in responses)
    committed_in = await metric(server, "realtube_vote_batch_size_count")
    assert 0 < committed_in < len(responses) / 2, "the votes must have shared transactions"
    expected = {c: sum(1 for b in on_shared if b["category"] == c) for c in CATEGORIES}
    counts = dict(
        await pg.fetch(
            database_url,
            "SELECT category, votes FROM video_categories WHERE video_id = $1 AND votes > 0",
            shared,
        )
    )
    assert counts == expected
    assert await pg.fetchval(
        database_url, "SELECT total_votes FROM videos WHERE video_id = $1", shared
    ) == len(on_shared)
    [drift] = await pg.fetch(
        database_url,
        "SELECT (SELECT count(*) FROM votes) AS rows,"
        " (SELECT sum(total_votes) FROM videos) AS videos,"
        " (SELECT sum(votes) FROM video_categories) AS categories,"
        " (SELECT sum(total_votes) FROM users) AS users,"
        " (SELECT sum(votes) FROM ip_hashes) AS ip_hashes",
    )
    assert dict(drift) == dict.fromkeys(drift.keys(), len(responses))
    await eventually(
        lambda: pg.scored(database_url, [shared, *(b["videoId"] for b in elsewhere)]),
        timeout=15,
        what="every batched video scored",
    )


async def test_batched_votes_reply_the_score_their_video_settles_at(servers, database_url):
    server = servers.start(VOTE_BATCH_MS="200")  # long enough for both to share a batch
    video = ids.video_id()
    bodies = [{"videoId": video, "category": "fully_ai", "userId": ids.user_id()} for _ in range(2)]

    responses = await post_all(server, bodies)

    await eventually(lambda: pg.scored(database_url, [video]), what="video scored")
    async with httpx.AsyncClient(base_url=server.url) as client:
        shown = (await client.get("/api/videos", params={"videoId": video})).json()["score"]
    assert shown == 16.7  # two new accounts: 100 % x 0.5 / 3
    assert [r.json()["newScore"] for r in responses] == [shown, shown]


async def test_same_user_twice_in_one_batch_keeps_the_later_cast(settings):
    video, user, other_video = ids.video_id(), ids.user_id(), ids.video_id()
    now = datetime.now(UTC)
    async with batching_services(settings, window_ms=300) as svc:
        newer_first = await cast_together(
            svc,
            [
                new_vote(video, user, "ai_visuals", cast_at=now - timedelta(minutes=1)),
                new_vote(video, user, "fully_ai", cast_at=now - timedelta(hours=1)),
                new_vote(other_video, user, "fully_ai", cast_at=now - timedelta(hours=1)),
                new_vote(other_video, user, "ai_voiceover", cast_at=now - timedelta(minutes=1)),
            ],
        )
        in_batches = batches(svc)
        stored = await pg.fetch(
            settings.database_url,
            "SELECT video_id, category FROM votes WHERE user_id = $1",
            user,
        )
        user_votes = await pg.fetchval(
            settings.database_url, "SELECT total_votes FROM users WHERE user_id = $1", user
        )

    assert in_batches == 1
    assert [outcome.applied for outcome in newer_first] == [True, False, True, True]
    assert dict(stored) == {video: "ai_visuals", other_video: "ai_voiceover"}
    assert user_votes == 2


async def test_every_acknowledged_vote_survives_a_sigkill(servers, database_url):
    # Each transaction lingers 0.5 s after its votes are written, so a reply sent before the
    # commit would have a wide window to be lost in.
    await pg.execute(
        database_url,
        "CREATE FUNCTION test_linger() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN PERFORM pg_sleep(0.5); RETURN NULL; END $$;"
        " CREATE TRIGGER test_linger AFTER INSERT ON votes"
        " FOR EACH STATEMENT EXECUTE FUNCTION test_linger();",
    )
    server = servers.start(VOTE_BATCH_MS="20")
    acknowledged: list[tuple[str, str, str]] = []
    enough = anyio.Event()

    async def voter(client: httpx.AsyncClient) -> None:
        categories = itertools.cycle(CATEGORIES)
        with contextlib.suppress(httpx.TransportError):
            while True:
                body = {
                    "videoId": ids.video_id(),
                    "category": next(categories),
                    "userId": ids.user_id(),
                }
                r = await client.post("/api/votes", json=body)
                assert r.status_code == 200, r.text
                acknowledged.append((body["videoId"], body["userId"], body["category"]))
                if len(acknowledged) >= 100:
                    enough.set()

    limits = httpx.Limits(max_connections=40, max_keepalive_connections=40)
    async with (
        httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client,
        anyio.create_task_group() as tg,
    ):
        for _ in range(40):
            tg.start_soon(voter, client)
        with anyio.fail_after(60):
            await enough.wait()
        server.kill()  # SIGKILL with votes in flight: replies may be lost, never votes

    stored = {
        (r["video_id"], r["user_id"], r["category"])
        for r in await pg.fetch(database_url, "SELECT video_id, user_id, category FROM votes")
    }
    missing = [vote for vote in acknowledged if vote not in stored]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged votes lost"


async def test_a_vote_that_cannot_be_stored_fails_alone(settings):
    good = [new_vote(ids.video_id(), ids.user_id()) for _ in range(20)]
    bad = new_vote(ids.video_id(), ids.user_id(), user_agent="a\x00b")  # PostgreSQL refuses NUL
    async with batching_services(settings, window_ms=300) as svc:
        results = await cast_together(svc, [*good[:10], bad, *good[10:]])
        in_batches = batches(svc)
        retried = svc.metrics.registry.get_sample_value("realtube_vote_batches_retried_total")

    assert in_batches == 1
    assert retried == 1
    assert isinstance(results[10], asyncpg.PostgresError)
    assert all(r.applied for r in results[:10] + results[11:])  # type: ignore[union-attr]
    stored = await pg.fetch(settings.database_url, "SELECT video_id, user_id FROM votes")
    assert {(r["video_id"], r["user_id"]) for r in stored} == {
        (v.video_id, v.user_id) for v in good
    }
    assert await pg.fetchval(settings.database_url, "SELECT sum(total_votes) FROM videos") == 20
