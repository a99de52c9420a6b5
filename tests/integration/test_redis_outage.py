"""A Redis outage seen from the log and the metrics: votes keep working, the log says so once.

Redis holds only what can be rebuilt (cached copies, rate-limit counters, the recent-delta
store) and carries the bus; PostgreSQL holds every vote and the sync log. So during an outage
votes are answered as usual, and what could not reach Redis is counted, not logged call by
call: a log line per call was a 3.3 KB traceback per vote, 11.5 MB of log a minute.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support import ids
from tests.support.api import vote
from tests.support.live import (
    RestartableRedis,
    metric,
    settled_position,
    ws_subscriber,
)
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio

VOTES_DURING_OUTAGE = 30


def events(log: str) -> list[dict[str, Any]]:
    """The JSON log lines of a server log, parsed."""
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


async def test_votes_during_a_redis_outage_log_one_warning_and_count_each_failed_call(
    servers, database_url, tmp_path
):
    redis = RestartableRedis(tmp_path)  # the server's Redis, ours to stop and start
    redis.start()
    try:
        server = servers.start(
            REDIS_URL=redis.url, RATE_LIMITS_ENABLED="true", LIVE_TAIL_CHECK_SECONDS="0.2"
        )
        async with (
            httpx.AsyncClient(base_url=server.url) as api,
            ws_subscriber(server.url) as sub,
        ):
            await sub.until_frame("welcome")
            await vote(api, ids.video_id())

            outage_starts = len(server.log())
            redis.stop()
            for _ in range(VOTES_DURING_OUTAGE):
                video = ids.video_id()
                answer = (await vote(api, video)).json()
                assert answer["applied"] is True
                assert (await api.get("/api/videos", params={"videoId": video})).status_code in (
                    200,
                    404,  # not scored yet: a lookup that misses the cache reads PostgreSQL
                )
            last = await settled_position(database_url)  # the score worker went on too
            during = server.log()[outage_starts:]
            outage = events(during)
            assert [e["event"] for e in outage if e["level"] == "warning"] == ["redis_unavailable"]
            assert not [e for e in outage if "exception" in e], "no traceback during the outage"
            assert "Traceback" not in during
            failed = await metric(
                server.url, "realtube_redis_failures_total", operation="invalidate"
            )
            assert failed >= VOTES_DURING_OUTAGE  # one per vote at least (and the worker's)

            redis.start()
            # the bus resubscribes and backfills what it missed from the sync log
            await sub.until_seq(last, within=20)
            await eventually(
                lambda: any(e["event"] == "redis_recovered" for e in events(server.log())),
                timeout=20,
                what="the recovery logged",
            )
    finally:
        servers.stop_all()  # before their Redis goes away for good
        redis.stop()

    recovered = [e for e in events(server.log()) if e["event"] == "redis_recovered"]
    assert len(recovered) == 1
    assert recovered[0]["failed_calls"] >= VOTES_DURING_OUTAGE
