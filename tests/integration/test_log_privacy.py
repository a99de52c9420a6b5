"""What the logs hold: never a full user id, never a client's address (docs/operations.md,
"Logs"). One server run exercises every kind of request, then its whole log is scanned."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.support import ids, pg
from tests.support.live import Dataset, full_sync, sse_subscriber, ws_subscriber
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio

CLIENT = "203.0.113.77"  # what nginx would forward; the TCP peer (127.0.0.1) is the proxy
TOKEN = "log-privacy-admin-token"
FULL_USER_ID = re.compile(r"[0-9a-f]{64}", re.IGNORECASE)


async def _exercise_every_kind_of_request(base_url: str, database_url: str) -> None:
    forwarded = {"X-Forwarded-For": CLIENT}
    user = ids.user_id()
    video = ids.video_id()

    async def settled() -> None:
        # one admin action at a time against a quiet score queue: an admin action racing the
        # score worker on one video can deadlock in PostgreSQL (not what this test is about)
        await eventually(lambda: pg.scored(database_url, [video]), timeout=30, what="scored")

    async with httpx.AsyncClient(base_url=base_url, headers=forwarded, timeout=10) as client:
        # votes, withdrawals and reads, with the user id in bodies, paths and headers
        vote = {"videoId": video, "category": "fully_ai", "userId": user}
        assert (await client.post("/api/votes", json=vote)).status_code == 200
        withdrawal = {"videoId": video, "userId": user}
        assert (await client.request("DELETE", "/api/votes", json=withdrawal)).status_code == 200
        assert (await client.post("/api/votes", json=vote)).status_code == 200
        assert (await client.get("/api/videos", params={"videoId": video})).status_code == 200
        assert (await client.get(f"/api/users/{user}")).status_code in (200, 404)
        sync = await client.get("/api/sync/delta", params={"since": 0}, headers={"X-User-ID": user})
        assert sync.status_code in (200, 400, 429)
        # errors: unknown route, malformed body, bad field, a body too large, a NUL character
        json_type = {"Content-Type": "application/json"}
        for r in (
            await client.get(f"/nowhere/{user}"),
            await client.post("/api/votes", content=b"{", headers=json_type),
            await client.post("/api/votes", json={**vote, "category": "nope"}),
            await client.post("/api/votes", content=b"x" * 20_000, headers=json_type),
            await client.post("/api/votes", json={**vote, "userAgent": "a\u0000b"}),
        ):
            assert r.status_code >= 400
        # admin: a failed and a good login, then actions on a user and a video
        assert (await client.post("/api/admin/login", json={"token": "wrong"})).status_code == 401
        assert (await client.post("/api/admin/login", json={"token": TOKEN})).status_code == 200
        for action in ("shadowban", "unban"):
            await settled()
            r = await client.post(f"/api/admin/users/{user}/{action}", json={"reason": "test"})
            assert r.status_code == 200, r.text
        await settled()
        r = await client.post(f"/api/admin/videos/{video}/lock", json={"reason": CLIENT})
        assert r.status_code == 200, r.text
        dataset = await full_sync(client)
    # live connections on both transports, from the forwarded address
    async with ws_subscriber(base_url, Dataset(), headers=dict(forwarded)) as ws:
        await ws.until_frame("welcome")
    async with sse_subscriber(base_url, dataset, headers=dict(forwarded)) as sse:
        await sse.until_frame("welcome")


async def test_no_log_line_holds_a_full_user_id_or_a_client_address(servers, database_url):
    server = servers.start(TRUSTED_PROXIES="127.0.0.1/32", ADMIN_TOKEN=TOKEN, LOG_FORMAT="json")

    await _exercise_every_kind_of_request(server.url, database_url)
    assert server.terminate() == 0

    log = server.log()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    events = {line["event"] for line in lines}
    assert {"request", "admin_action", "admin_login", "admin_login_failed"} <= events, events
    assert any(line.get("target_type") == "user" for line in lines), "no user action logged"
    assert FULL_USER_ID.findall(log) == []
    assert CLIENT not in log
    # the server's own listening address is the one address a line may show
    own = [line for line in log.splitlines() if "127.0.0.1" in line]
    assert len(own) == 1, own
    assert json.loads(own[0])["event"] == "listening"
