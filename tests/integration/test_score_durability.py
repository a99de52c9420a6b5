"""The score queue is durable: with no worker running, a worker crashed, killed or cut off from
PostgreSQL, two workers at once, or Redis gone, no vote is lost, no video is logged twice and
the sync log has no gap."""

from __future__ import annotations

from urllib.parse import urlsplit

import anyio
import asyncpg
import httpx
import pytest

from realtube_push.services import open_services
from realtube_push.store import scores as score_store
from realtube_push.workers import score
from tests.support import ids, pg, scoring, votes
from tests.support.api import vote
from tests.support.polling import eventually
from tests.support.redis_server import own_redis

pytestmark = pytest.mark.anyio


async def log_entries(database_url: str) -> list[tuple[int, str]]:
    """(seq, video_id) of every video delta in the sync log, in seq order."""
    rows = await pg.fetch(
        database_url, "SELECT seq, entity_id FROM sync_cache WHERE kind = 'video' ORDER BY seq"
    )
    return [(r["seq"], r["entity_id"]) for r in rows]


def assert_logged_once_without_gaps(entries: list[tuple[int, str]], videos: list[str]) -> None:
    """Every video has exactly one delta and the seqs are exactly 1..N."""
    assert sorted(video for _, video in entries) == sorted(videos)
    assert [seq for seq, _ in entries] == list(range(1, len(videos) + 1))


async def test_votes_wait_in_the_queue_until_a_worker_scores_them(servers, database_url):
    server = servers.start(RUN_WORKERS="false")
    videos = [ids.video_id() for _ in range(5)]
    async with httpx.AsyncClient(base_url=server.url) as client:
        for video in videos:
            await vote(client, video)
        ready = (await client.get("/health/ready")).json()

    assert ready["checks"]["score_worker"] == {"status": "external"}
    assert await pg.score_queued(database_url, videos) == len(videos)
    assert await pg.fetchval(database_url, "SELECT count(*) FROM videos WHERE score > 0") == 0

    servers.start(command="worker", wait_ready=False)

    await eventually(lambda: pg.scored(database_url, videos), timeout=10, what="queue drained")
    scores = await pg.fetch(
        database_url, "SELECT score FROM videos WHERE video_id = ANY($1::text[])", videos
    )
    assert len(scores) == len(videos)
    assert all(r["score"] > 0 for r in scores)
    assert_logged_once_without_gaps(await log_entries(database_url), videos)


async def test_vote_during_a_redis_outage_is_acknowledged_stored_and_scored(servers, tmp_path):
    with own_redis(tmp_path) as redis:
        server = servers.start(REDIS_URL=redis.url)  # rate limits off: PostgreSQL alone decides
        redis.stop()
        video = ids.video_id()
        async with httpx.AsyncClient(base_url=server.url) as client:
            r = await client.post(
                "/api/votes",
                json={"videoId": video, "category": "fully_ai", "userId": ids.user_id()},
            )

        assert r.status_code == 200, r.text
        assert r.json()["applied"] is True
        database_url = server.env["DATABASE_URL"]
        await eventually(lambda: pg.scored(database_url, [video]), what="video scored")
        assert await pg.fetchval(
            database_url, "SELECT score FROM videos WHERE video_id = $1", video
        )


async def test_a_worker_crashing_mid_batch_loses_nothing(services):
    videos = [ids.video_id() for _ in range(20)]
    for video in videos:
        await votes.cast(services.pool, video, ids.user_id())
    crashed = await asyncpg.connect(services.database_url)
    await crashed.execute("BEGIN")
    assert sorted(await score_store.claim_batch(crashed, 100)) == sorted(videos)
    backend = crashed.get_server_pid()

    crashed.terminate()  # the process died: no rollback sent, the socket just closes
    await eventually(
        lambda: pg.fetchval(
            services.database_url,
            "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)",
            backend,
        ),
        what="crashed session gone",
    )

    assert await score.drain(services) == len(videos)
    assert await scoring.stored(services.pool, videos) == await scoring.recomputed(
        services.pool, videos
    )
    assert_logged_once_without_gaps(await log_entries(services.database_url), videos)


async def test_two_workers_share_a_backlog_without_duplicates_or_gaps(services, settings):
    videos = [ids.video_id() for _ in range(300)]
    async with anyio.create_task_group() as tg:
        for chunk in range(10):  # ten voters at a time
            tg.start_soon(cast_all, services, videos[chunk::10])
    small_batches = settings.model_copy(update={"score_batch_size": 20})
    services.settings = small_batches
    done: list[int] = []

    async with open_services(small_batches) as other:

        async def drain(svc) -> None:
            done.append(await score.drain(svc))

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, services)
            tg.start_soon(drain, other)

    assert sum(done) == len(videos)
    assert all(n > 0 for n in done), "both workers must have taken batches"
    assert await pg.score_queued(services.database_url, videos) == 0
    assert_logged_once_without_gaps(await log_entries(services.database_url), videos)
    last_seq = await services.pool.fetchval("SELECT last_seq FROM sync_meta")
    assert last_seq == len(videos)


async def cast_all(services, videos: list[str]) -> None:
    for video in videos:
        await votes.cast(services.pool, video, ids.user_id())


BACKLOG = 4000


async def queue_backlog(database_url: str, count: int) -> list[str]:
    """``count`` videos with one vote each, all waiting in the score queue (bulk SQL)."""
    videos = [f"bk{i:05d}" for i in range(count)]
    voter = ids.user_id()
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute("INSERT INTO users (user_id, trust_score) VALUES ($1, 0.25)", voter)
            await conn.execute(
                "INSERT INTO videos (video_id, video_hash) SELECT v,"
                " encode(sha256(convert_to(v, 'UTF8')), 'hex') FROM unnest($1::text[]) v",
                videos,
            )
            await conn.execute(
                "INSERT INTO votes (video_id, user_id, category, weight, cast_at)"
                " SELECT v, $2, 'fully_ai', 0.25, now() FROM unnest($1::text[]) v",
                videos,
                voter,
            )
            await conn.execute(
                "INSERT INTO score_queue (video_id) SELECT unnest($1::text[])", videos
            )
    finally:
        await conn.close()
    return videos


async def test_a_killed_worker_process_leaves_its_backlog_to_the_next(servers, database_url):
    videos = await queue_backlog(database_url, BACKLOG)
    first = servers.start(command="worker", wait_ready=False, SCORE_BATCH_SIZE="25")
    await eventually(
        lambda: pg.fetchval(database_url, "SELECT count(*) >= 100 FROM sync_cache"),
        timeout=15,
        what="first worker under way",
    )

    first.kill()  # SIGKILL, most likely mid-batch

    left = await pg.score_queued(database_url, videos)
    assert 0 < left < BACKLOG, "the worker must die with work left for this test to mean much"
    servers.start(command="worker", wait_ready=False)
    await eventually(lambda: pg.scored(database_url, videos), timeout=20, what="backlog drained")
    assert_logged_once_without_gaps(await log_entries(database_url), videos)


async def test_a_worker_whose_connections_drop_mid_backlog_recovers_and_loses_nothing(
    servers, stack, database_url
):
    videos = await queue_backlog(database_url, BACKLOG)
    worker = servers.start(
        command="worker", wait_ready=False, SCORE_BATCH_SIZE="25", SCORE_POLL_SECONDS="0.2"
    )
    database = urlsplit(database_url).path.lstrip("/")
    logged = 0
    for _ in range(3):  # as a PostgreSQL restart or failover would, while batches are in flight

        async def progressed(since: int = logged) -> int:
            assert worker.process.poll() is None, f"the worker died:\n{worker.log()[-3000:]}"
            count = await pg.fetchval(database_url, "SELECT count(*) FROM sync_cache")
            return count if count >= since + 50 else 0

        logged = await eventually(progressed, timeout=15, what="worker making progress")
        await pg.execute(
            stack.admin_database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )

    async def drained() -> bool:
        assert worker.process.poll() is None, f"the worker died:\n{worker.log()[-3000:]}"
        return await pg.scored(database_url, videos)

    await eventually(drained, timeout=30, what="backlog drained")
    assert_logged_once_without_gaps(await log_entries(database_url), videos)


async def test_sigterm_while_the_database_is_down_still_exits_0(servers, stack, database_url):
    server = servers.start()
    await pg.take_database_away(stack.admin_database_url, database_url)

    # the shutdown flush cannot reach the queue; the queue is durable, the next worker takes it
    assert server.terminate() == 0, server.log()[-3000:]
