"""Whatever votes arrive, in whatever order, the stored scores end up equal to the formula
applied to the votes table: a property test over random vote/change/withdraw sequences."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import strategies as st

from realtube_push.domain.categories import CATEGORIES
from realtube_push.services import Services
from realtube_push.workers import score
from tests.support import pg, scoring, votes
from tests.support.properties import for_all

pytestmark = pytest.mark.anyio

USERS, VIDEOS = 4, 3
NOW = datetime.now(UTC)

cast_step = st.tuples(
    st.just("cast"),
    st.integers(0, VIDEOS - 1),
    st.integers(0, USERS - 1),
    st.sampled_from(CATEGORIES),
    # client cast times within the last hour, in any order (the API clamps future ones
    # before the store sees them)
    st.integers(-3600, 0).map(lambda seconds: NOW + timedelta(seconds=seconds)),
)
withdraw_step = st.tuples(
    st.just("withdraw"), st.integers(0, VIDEOS - 1), st.integers(0, USERS - 1)
)
drain_step = st.just(("drain",))  # a worker pass in the middle of the sequence
steps = st.lists(
    st.one_of(cast_step, cast_step, withdraw_step, drain_step), min_size=1, max_size=30
)


async def apply(svc: Services, sequence: list[tuple]) -> list[str]:
    """Play ``sequence`` on fresh ids, then let the worker drain; returns the video ids."""
    tag = secrets.token_hex(4)
    videos = [f"cv{tag}{i}" for i in range(VIDEOS)]
    users = [f"{tag}{i:02x}" for i in range(USERS)]
    for step in sequence:
        if step[0] == "cast":
            _, video, user, category, cast_at = step
            await votes.cast(svc.pool, videos[video], users[user], category, cast_at=cast_at)
        elif step[0] == "withdraw":
            await votes.withdraw(svc.pool, videos[step[1]], users[step[2]])
        else:
            await score.drain(svc)
    await score.drain(svc)
    return videos


async def test_stored_scores_equal_the_formula_over_the_votes(services):
    async def converges(sequence: list[tuple]) -> None:
        videos = await apply(services, sequence)
        assert await scoring.stored(services.pool, videos) == await scoring.recomputed(
            services.pool, videos
        )
        assert await pg.score_queued(services.database_url, videos) == 0

    await for_all(steps, converges, max_examples=25)
