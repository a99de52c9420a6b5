"""A moderation action on a video the score worker is recalculating at that moment.

The worker's batch holds the video's queue row and then locks the video row; an action that
locked the video row first and then queued the video deadlocked with it (one side aborted,
the action answered 500). The action must wait its turn instead and succeed.
"""

from __future__ import annotations

import anyio
import asyncpg
import httpx
import pytest

from tests.support import ids, pg
from tests.support.api import vote
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio

TOKEN = "moderation-concurrency-token"


async def action_waits_for_a_lock(database_url: str) -> bool:
    rows = await pg.fetch(
        database_url,
        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND query ILIKE '%score_queue%' AND datname = current_database()",
    )
    return bool(rows)


@pytest.mark.parametrize("action", ["lock", "hide"])
async def test_an_action_during_the_videos_recalculation_succeeds_without_deadlock(
    servers, database_url, action
):
    server = servers.start(ADMIN_TOKEN=TOKEN)
    video = ids.video_id()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        await vote(client, video)
        await eventually(lambda: pg.scored(database_url, [video]), what="video scored")
        assert (await client.post("/api/admin/login", json={"token": TOKEN})).status_code == 200

        batch = await asyncpg.connect(database_url)  # plays a score batch holding the video
        try:
            tx = batch.transaction()
            await tx.start()
            await batch.execute("INSERT INTO score_queue (video_id) VALUES ($1)", video)
            answers: list[httpx.Response] = []
            async with anyio.create_task_group() as tg:

                async def act() -> None:
                    answers.append(
                        await client.post(
                            f"/api/admin/videos/{video}/{action}", json={"reason": "race"}
                        )
                    )

                tg.start_soon(act)
                await eventually(lambda: action_waits_for_a_lock(database_url), what="action waits")
                await batch.execute(
                    "SELECT 1 FROM videos WHERE video_id = $1 FOR UPDATE", video, timeout=10
                )
                await tx.commit()
        finally:
            await batch.close()

    assert answers[0].status_code == 200, answers[0].text
