"""Channel aggregation against the real database: scores, auto-flag, deltas, concurrency."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from realtube_push.domain.ids import entity_hash
from realtube_push.services import Services
from realtube_push.store import channels as channel_store
from realtube_push.store.votes import NewVote, cast_vote
from realtube_push.workers import channels as channel_worker
from realtube_push.workers import score

pytestmark = pytest.mark.anyio


@pytest.fixture
def svc(services: Services) -> Services:
    """The services with no channel debounce, so queued channels are ripe at once."""
    services.settings = services.settings.model_copy(update={"channel_debounce_seconds": 0})
    return services


async def seed_channel(
    svc: Services,
    channel_id: str,
    videos: list[tuple[float, int, dict[str, int]]],
    *,
    locked: bool = False,
    score: float = 0.0,
    queue: bool = True,
) -> None:
    """A channel row and its videos as (score, total_votes, {category: votes})."""
    async with svc.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO channels (channel_id, channel_hash, locked, score)"
            " VALUES ($1, $2, $3, $4)",
            channel_id,
            entity_hash(channel_id),
            locked,
            score,
        )
        for i, (video_score, total, cats) in enumerate(videos):
            video_id = f"{channel_id[:10]}v{i}"
            await conn.execute(
                "INSERT INTO videos (video_id, video_hash, channel_id, score, total_votes)"
                " VALUES ($1, $2, $3, $4, $5)",
                video_id,
                entity_hash(video_id),
                channel_id,
                video_score,
                total,
            )
            for category, votes in cats.items():
                await conn.execute(
                    "INSERT INTO video_categories (video_id, category, votes) VALUES ($1, $2, $3)",
                    video_id,
                    category,
                    votes,
                )
        if queue:
            await conn.execute("INSERT INTO channel_queue (channel_id) VALUES ($1)", channel_id)


async def channel_deltas(svc: Services) -> list[dict[str, Any]]:
    rows = await svc.pool.fetch(
        "SELECT seq, entity_id, entity_hash, action, payload FROM sync_cache"
        " WHERE kind = 'channel' ORDER BY seq"
    )
    return [dict(r) for r in rows]


async def last_seq(svc: Services) -> int:
    return int(await svc.pool.fetchval("SELECT last_seq FROM sync_meta"))


async def test_channel_with_three_voted_videos_gets_the_formula_score(svc: Services) -> None:
    await seed_channel(
        svc,
        "UCthree",
        [
            (90.0, 6, {"fully_ai": 5, "ai_voiceover": 1}),
            (70.0, 3, {"ai_voiceover": 3}),
            (20.0, 2, {"ai_visuals": 2}),
            (0.0, 0, {}),  # no votes: not tracked
        ],
    )

    assert await channel_worker.process_batch(svc) == 1

    row = await channel_store.get_channel(svc.pool, "UCthree")
    assert row is not None
    # 2 flagged of 3 tracked, mean flagged 80 -> 2/3 * 80 = 53.3
    assert row["score"] == 53.3
    assert (row["total_videos"], row["flagged_videos"]) == (3, 2)
    assert list(row["top_categories"]) == ["fully_ai", "ai_voiceover", "ai_visuals"]
    assert not row["auto_flag_new"]


async def test_changed_channel_gets_a_delta_with_the_next_seq(svc: Services) -> None:
    before = await last_seq(svc)
    await seed_channel(svc, "UCdelta", [(80.0, 3, {"fully_ai": 3})] * 3)

    await channel_worker.process_batch(svc)

    [delta] = await channel_deltas(svc)
    assert delta["seq"] == before + 1
    assert await last_seq(svc) == before + 1
    assert delta["entity_id"] == "UCdelta"
    assert delta["entity_hash"] == entity_hash("UCdelta")
    assert delta["action"] == "update"
    row = await channel_store.get_channel(svc.pool, "UCdelta")
    assert row is not None
    assert delta["payload"] == {
        "channelId": "UCdelta",
        "score": 80.0,
        "totalVideos": 3,
        "flaggedVideos": 3,
        "topCategories": ["fully_ai"],
        "locked": False,
        "autoFlag": False,
        "lastUpdated": row["last_updated"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "action": "update",
    }


async def test_fewer_than_three_tracked_videos_score_zero_without_delta(svc: Services) -> None:
    before = await last_seq(svc)
    await seed_channel(svc, "UCtwo", [(95.0, 4, {"fully_ai": 4}), (90.0, 4, {"fully_ai": 4})])

    await channel_worker.process_batch(svc)

    row = await channel_store.get_channel(svc.pool, "UCtwo")
    assert row is not None
    assert row["score"] == 0.0
    assert row["total_videos"] == 2
    assert await channel_deltas(svc) == []
    assert await last_seq(svc) == before


async def test_channel_falling_to_zero_is_logged_as_remove(svc: Services) -> None:
    await seed_channel(svc, "UCfall", [(90.0, 3, {"fully_ai": 3})], score=60.0)

    await channel_worker.process_batch(svc)

    [delta] = await channel_deltas(svc)
    assert delta["action"] == "remove"
    assert delta["payload"]["score"] == 0.0
    assert delta["payload"]["action"] == "remove"


async def test_auto_flag_at_80_with_20_flagged_videos(svc: Services) -> None:
    await seed_channel(svc, "UCauto", [(90.0, 3, {"fully_ai": 3})] * 20)

    await channel_worker.process_batch(svc)

    row = await channel_store.get_channel(svc.pool, "UCauto")
    assert row is not None
    assert (row["score"], row["flagged_videos"], row["auto_flag_new"]) == (90.0, 20, True)
    [delta] = await channel_deltas(svc)
    assert delta["payload"]["autoFlag"] is True


async def test_no_auto_flag_with_19_flagged_videos(svc: Services) -> None:
    await seed_channel(svc, "UCnineteen", [(90.0, 3, {"fully_ai": 3})] * 19)

    await channel_worker.process_batch(svc)

    row = await channel_store.get_channel(svc.pool, "UCnineteen")
    assert row is not None
    assert (row["score"], row["auto_flag_new"]) == (90.0, False)


async def test_no_auto_flag_below_score_80(svc: Services) -> None:
    await seed_channel(
        svc, "UClow", [(90.0, 3, {"fully_ai": 3})] * 20 + [(0.0, 3, {"fully_ai": 3})] * 5
    )

    await channel_worker.process_batch(svc)

    row = await channel_store.get_channel(svc.pool, "UClow")
    assert row is not None
    assert (row["score"], row["auto_flag_new"]) == (72.0, False)  # 20/25 * 90


async def test_locked_channel_keeps_its_score_and_never_auto_flags(svc: Services) -> None:
    await seed_channel(svc, "UClocked", [(90.0, 3, {"fully_ai": 3})] * 20, locked=True, score=12.5)

    await channel_worker.process_batch(svc)

    row = await channel_store.get_channel(svc.pool, "UClocked")
    assert row is not None
    assert (row["score"], row["flagged_videos"], row["auto_flag_new"]) == (12.5, 20, False)
    [delta] = await channel_deltas(svc)  # counts changed while the score stayed > 0
    assert delta["payload"]["locked"] is True


async def test_channel_score_follows_its_videos_votes(svc: Services) -> None:
    voters = [f"{i:02x}" * 8 for i in range(3)]
    await svc.pool.execute(
        "INSERT INTO users (user_id, trust_score) SELECT unnest($1::text[]), 1.0", voters
    )
    async with svc.pool.acquire() as conn:
        for v in range(3):
            for user in voters:
                await cast_vote(
                    conn,
                    NewVote(
                        video_id=f"vid{v}",
                        video_hash=entity_hash(f"vid{v}"),
                        user_id=user,
                        category="fully_ai",
                        cast_at=datetime.now(UTC),
                        channel_id="UCvoted",
                        channel_hash=entity_hash("UCvoted"),
                        ip_hash=None,
                        user_agent=None,
                    ),
                )
    await score.drain(svc)
    assert await channel_store.queue_length(svc.pool) == 1

    assert await channel_worker.drain(svc) == 1

    row = await channel_store.get_channel(svc.pool, "UCvoted")
    assert row is not None
    # three votes of weight 1.0 reach full confidence: every video scores 100
    assert (row["score"], row["total_videos"], row["flagged_videos"]) == (100.0, 3, 3)
    assert [d["entity_id"] for d in await channel_deltas(svc)] == ["UCvoted"]


async def test_unchanged_channel_is_neither_rewritten_nor_logged(svc: Services) -> None:
    await seed_channel(svc, "UCsame", [(80.0, 3, {"fully_ai": 3})] * 3)
    await channel_worker.process_batch(svc)
    first = await channel_store.get_channel(svc.pool, "UCsame")
    seq = await last_seq(svc)

    assert await channel_store.enqueue_all(svc.pool) == 1
    assert await channel_worker.process_batch(svc) == 1

    assert await channel_store.get_channel(svc.pool, "UCsame") == first
    assert await last_seq(svc) == seq


async def test_queued_channel_waits_for_the_debounce_window(services: Services) -> None:
    services.settings = services.settings.model_copy(update={"channel_debounce_seconds": 60})
    await seed_channel(services, "UCwait", [(80.0, 3, {"fully_ai": 3})] * 3)

    assert await channel_worker.process_batch(services) == 0
    assert await channel_store.queue_length(services.pool) == 1

    await services.pool.execute("UPDATE channel_queue SET enqueued_at = now() - interval '61 s'")
    assert await channel_worker.process_batch(services) == 1
    assert await channel_store.queue_length(services.pool) == 0


async def test_enqueue_all_queues_every_channel_with_videos(svc: Services) -> None:
    await seed_channel(svc, "UCa", [(0.0, 0, {})], queue=False)
    await seed_channel(svc, "UCb", [(50.0, 1, {"fully_ai": 1})], queue=False)
    await seed_channel(svc, "UCempty", [], queue=False)

    assert await channel_store.enqueue_all(svc.pool) == 2
    queued = await svc.pool.fetch("SELECT channel_id FROM channel_queue ORDER BY channel_id")
    assert [r["channel_id"] for r in queued] == ["UCa", "UCb"]


async def test_get_channel_of_unknown_id_is_none(svc: Services) -> None:
    assert await channel_store.get_channel(svc.pool, "UCnobody") is None


async def test_changed_channel_cache_key_is_dropped_and_delta_published(svc: Services) -> None:
    key = svc.keys.channel("UCcache")
    await svc.cache.fill(key, {"stale": True}, 60, await svc.cache.lookup(key))
    assert await svc.redis.get(key) is not None
    await seed_channel(svc, "UCcache", [(80.0, 3, {"fully_ai": 3})] * 3)

    await channel_worker.process_batch(svc)

    assert await svc.redis.get(svc.keys.channel("UCcache")) is None
    assert await svc.redis.zcard(svc.keys.recent_deltas) == 1


async def test_concurrent_batches_never_share_a_channel_and_leave_no_seq_gap(
    svc: Services,
) -> None:
    n = 120
    async with svc.pool.acquire() as conn:
        ids = [f"UCc{i:04d}" for i in range(n)]
        await conn.execute(
            "INSERT INTO channels (channel_id, channel_hash)"
            " SELECT * FROM unnest($1::text[], $2::text[])",
            ids,
            [entity_hash(c) for c in ids],
        )
        await conn.execute(
            "INSERT INTO videos (video_id, video_hash, channel_id, score, total_votes)"
            " SELECT c || '_' || k, md5(c || k), c, 60 + k, 2"
            " FROM unnest($1::text[]) AS c, generate_series(1, 3) AS k",
            ids,
        )
        await conn.execute("INSERT INTO channel_queue (channel_id) SELECT unnest($1::text[])", ids)
    before = await last_seq(svc)
    claimed: list[int] = []

    async def worker() -> None:
        while (got := await channel_worker.process_batch(svc, limit=7)) > 0:
            claimed.append(got)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(worker)

    assert sum(claimed) == n
    deltas = await channel_deltas(svc)
    assert sorted(d["entity_id"] for d in deltas) == ids  # each channel exactly once
    assert [d["seq"] for d in deltas] == list(range(before + 1, before + n + 1))
    assert await last_seq(svc) == before + n
    assert await channel_store.queue_length(svc.pool) == 0
