"""The trust worker: recomputes every user's trust and accuracy rate from their votes.

Promises:
- a refresh visits every user that existed when it started, in pages of ``PAGE_SIZE`` by
  ``user_id``, each page one read and one write (no transaction spans the whole pass, so a
  refresh never blocks voters for long);
- the values stored are exactly ``domain.trust.trust_score`` / ``accuracy_rate`` of the
  counts read, with the window and threshold of ``domain.trust``;
- existing votes keep the weight they were cast with; only later votes see the new trust.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import structlog

from realtube_push.domain.trust import (
    ACCURACY_WINDOW_DAYS,
    ACCURATE_SCORE,
    accuracy_rate,
    trust_score,
)
from realtube_push.services import Services
from realtube_push.store import users as user_store
from realtube_push.store.users import TrustInputs, TrustWrite
from realtube_push.workers.periodic import run_periodically

log = structlog.get_logger("realtube.trust")

PAGE_SIZE: Final = 1_000


def plan_page(users: Sequence[TrustInputs]) -> list[TrustWrite]:
    """The trust and accuracy rate each user's counts give."""
    return [
        TrustWrite(
            user_id=u.user_id,
            trust_score=trust_score(u.age_days, u.total_votes, u.window_votes, u.accurate_votes),
            accuracy_rate=accuracy_rate(u.window_votes, u.accurate_votes),
        )
        for u in users
    ]


async def refresh(svc: Services, *, page_size: int = PAGE_SIZE) -> int:
    """Recompute trust for all users, page by page; returns how many users were updated."""
    updated = 0
    after: str | None = None
    async with svc.pool.acquire() as conn:
        while True:
            page = await user_store.trust_inputs_page(
                conn,
                after_user_id=after,
                limit=page_size,
                window_days=ACCURACY_WINDOW_DAYS,
                accurate_score=ACCURATE_SCORE,
            )
            if not page:
                break
            updated += await user_store.write_trust(conn, plan_page(page))
            after = page[-1].user_id
            if len(page) < page_size:
                break
    return updated


async def run(svc: Services) -> None:
    """Refresh trust at start and then every ``trust_interval_seconds``."""

    async def refresh_and_report() -> None:
        log.info("trust_refreshed", users=await refresh(svc))

    await run_periodically(
        svc,
        name="trust_worker",
        interval=svc.settings.trust_interval_seconds,
        job=refresh_and_report,
    )
