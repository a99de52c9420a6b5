"""Trust refresh and user records against the real database."""

from __future__ import annotations

import pytest

from realtube_push.domain.ids import entity_hash
from realtube_push.domain.trust import NEW_ACCOUNT_TRUST
from realtube_push.services import Services
from realtube_push.store import users as user_store
from realtube_push.workers import trust

pytestmark = pytest.mark.anyio


async def add_user(
    svc: Services, user_id: str, *, age_days: int, trust_score: float = 0.25
) -> None:
    await svc.pool.execute(
        "INSERT INTO users (user_id, trust_score, first_seen)"
        " VALUES ($1, $2, now() - make_interval(hours => 24 * $3))",
        user_id,
        trust_score,
        age_days,
    )


async def add_votes(
    svc: Services, user_id: str, *, count: int, score: float, days_ago: int
) -> None:
    """``count`` votes by the user, cast ``days_ago`` days ago, on new videos scoring ``score``."""
    async with svc.pool.acquire() as conn, conn.transaction():
        base = int(await conn.fetchval("SELECT count(*) FROM videos"))
        ids = [f"v{base + i}" for i in range(count)]
        await conn.execute(
            "INSERT INTO videos (video_id, video_hash, score)"
            " SELECT v, h, $3 FROM unnest($1::text[], $2::text[]) AS u(v, h)",
            ids,
            [entity_hash(v) for v in ids],
            score,
        )
        await conn.execute(
            "INSERT INTO votes (video_id, user_id, category, weight, cast_at)"
            " SELECT unnest($1::text[]), $2, 'fully_ai', 0.5,"
            " now() - make_interval(hours => 24 * $3)",
            ids,
            user_id,
            days_ago,
        )


async def stored(svc: Services, user_id: str) -> tuple[float, float]:
    row = await svc.pool.fetchrow(
        "SELECT trust_score, accuracy_rate FROM users WHERE user_id = $1", user_id
    )
    assert row is not None
    return row["trust_score"], row["accuracy_rate"]


async def test_new_account_without_votes_gets_age_share_and_neutral_accuracy(
    services: Services,
) -> None:
    await add_user(services, "aa", age_days=30)

    assert await trust.refresh(services) == 1

    # 0.30 * 30/60 + 0.50 * 0.5 + 0.20 * 0
    assert await stored(services, "aa") == (pytest.approx(0.4), 0.5)


async def test_accuracy_counts_only_window_votes_on_flagged_videos(services: Services) -> None:
    await add_user(services, "bb", age_days=90)
    await add_votes(services, "bb", count=9, score=75.0, days_ago=2)
    await add_votes(services, "bb", count=3, score=10.0, days_ago=5)
    await add_votes(services, "bb", count=8, score=90.0, days_ago=45)  # outside the window

    await trust.refresh(services)

    # age capped at 1; accuracy 9/12 = 0.75; volume 20/100
    assert await stored(services, "bb") == (
        pytest.approx(0.30 * 1 + 0.50 * 0.75 + 0.20 * 0.2),
        pytest.approx(0.75),
    )


async def test_fewer_than_ten_window_votes_keep_neutral_accuracy(services: Services) -> None:
    await add_user(services, "cc", age_days=6)
    await add_votes(services, "cc", count=9, score=0.0, days_ago=1)

    await trust.refresh(services)

    # 0.30 * 6/60 + 0.50 * 0.5 + 0.20 * 9/100
    assert await stored(services, "cc") == (pytest.approx(0.298), 0.5)


async def test_vote_on_video_scoring_exactly_50_is_accurate(services: Services) -> None:
    await add_user(services, "dd", age_days=60)
    await add_votes(services, "dd", count=10, score=50.0, days_ago=0)

    await trust.refresh(services)

    assert await stored(services, "dd") == (pytest.approx(0.30 + 0.50 + 0.02), 1.0)


async def test_refresh_visits_every_user_across_pages(services: Services) -> None:
    await services.pool.execute(
        "INSERT INTO users (user_id, trust_score, first_seen)"
        " SELECT to_hex(1000 + g), 0.25, now() - interval '60 days' FROM generate_series(1, 25) g"
    )

    assert await trust.refresh(services, page_size=10) == 25

    rows = await services.pool.fetch("SELECT trust_score, trust_updated_at FROM users")
    assert len(rows) == 25
    assert all(r["trust_updated_at"] is not None for r in rows)
    assert [r["trust_score"] for r in rows] == [0.55] * 25  # 0.30 + 0.25 + 0, rounded


async def test_refresh_of_a_page_multiple_stops_cleanly(services: Services) -> None:
    await services.pool.execute(
        "INSERT INTO users (user_id, trust_score)"
        " SELECT to_hex(g), 0.25 FROM generate_series(1, 20) g"
    )

    assert await trust.refresh(services, page_size=10) == 20


async def test_trust_change_does_not_rewrite_existing_votes(services: Services) -> None:
    await add_user(services, "ee", age_days=120)
    await add_votes(services, "ee", count=2, score=80.0, days_ago=1)

    await trust.refresh(services)

    weights = await services.pool.fetch("SELECT weight FROM votes WHERE user_id = 'ee'")
    assert [r["weight"] for r in weights] == [0.5, 0.5]
    assert (await stored(services, "ee"))[0] != 0.25


async def test_unknown_user_is_created_with_defaults(services: Services) -> None:
    row = await user_store.get_or_create_user(services.pool, "abc123", NEW_ACCOUNT_TRUST)

    assert row["user_id"] == "abc123"
    assert row["trust_score"] == NEW_ACCOUNT_TRUST
    assert (row["total_votes"], row["accuracy_rate"], row["is_vip"]) == (0, 0.5, False)
    assert row["age_days"] == pytest.approx(0, abs=0.01)


async def test_known_user_is_returned_unchanged(services: Services) -> None:
    await add_user(services, "abc", age_days=10, trust_score=0.7)
    before = await services.pool.fetchval("SELECT last_active FROM users WHERE user_id = 'abc'")

    row = await user_store.get_or_create_user(services.pool, "abc", NEW_ACCOUNT_TRUST)

    assert row["trust_score"] == 0.7
    assert row["last_active"] == before
    assert row["age_days"] == pytest.approx(10, abs=0.01)


async def test_shadowban_returns_the_users_voted_videos(services: Services) -> None:
    await add_user(services, "ff", age_days=1)
    await add_votes(services, "ff", count=3, score=0.0, days_ago=0)

    videos = await user_store.set_shadowban(services.pool, "ff", True)

    assert videos == ["v0", "v1", "v2"]
    assert await services.pool.fetchval("SELECT is_shadowbanned FROM users WHERE user_id = 'ff'")
    assert await user_store.set_shadowban(services.pool, "ff", False) == videos
    assert await user_store.set_shadowban(services.pool, "nobody", True) == []


async def test_set_vip_marks_the_user(services: Services) -> None:
    await add_user(services, "ab", age_days=1)

    assert await user_store.set_vip(services.pool, "ab", True)
    assert await services.pool.fetchval("SELECT is_vip FROM users WHERE user_id = 'ab'")
    assert not await user_store.set_vip(services.pool, "nobody", True)
