"""The shipped nginx config in front of two real app instances, on loopback.

What an operator's stack does: REST through nginx, the proxy cache, nginx's own rate limit,
TLS and headers, and the client address the app rate-limits (which a client must not be able
to choose by sending X-Forwarded-For itself).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time

import httpx
import pytest

from realtube_push.domain.ids import entity_hash
from tests.support import ids
from tests.support.nginx import NGINX_CONF, nginx_command, prepare_prefix, render_config
from tests.support.servers import Server

pytestmark = pytest.mark.stack


def vote_body() -> dict[str, str]:
    return {"videoId": ids.video_id(), "category": "fully_ai", "userId": ids.user_id()}


def random_prefix() -> str:
    """A hash prefix nobody looked up before: never in nginx's cache."""
    return secrets.token_hex(4)


def direct_client(app: Server, source: str) -> httpx.AsyncClient:
    """A client talking to ``app`` itself (not through nginx) from loopback address ``source``."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(base_url=app.url, transport=transport)


# --- the config itself ------------------------------------------------------------------


def test_rendered_config_differs_from_the_shipped_one_only_in_ports_and_upstreams():
    shipped = NGINX_CONF.read_text()
    rendered = render_config(
        shipped, http_port=8001, https_port=8002, upstreams=["127.0.0.1:9001", "127.0.0.1:9002"]
    )
    changed = [
        new.strip()
        for old, new in zip(shipped.splitlines(), rendered.splitlines(), strict=True)
        if old != new
    ]
    assert changed == [
        "server 127.0.0.1:9001 max_fails=3 fail_timeout=10s;",
        "server 127.0.0.1:9002 max_fails=3 fail_timeout=10s;",
        "listen 127.0.0.1:8001 default_server;",
        "listen 127.0.0.1:8002 ssl default_server;",
    ]


def test_shipped_config_passes_nginx_t(nginx_path):
    prefix, config, _, _ = prepare_prefix(["127.0.0.1:9001", "127.0.0.1:9002"])
    try:
        result = subprocess.run(
            nginx_command(nginx_path, prefix, config, "-t"), capture_output=True, text=True
        )
    finally:
        shutil.rmtree(prefix, ignore_errors=True)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "[warn]" not in result.stderr
    assert "[emerg]" not in result.stderr


# --- REST through nginx -------------------------------------------------------------------


@pytest.mark.anyio
async def test_rest_works_through_nginx(nginx_stack):
    body = vote_body()
    async with nginx_stack.nginx.client() as client:
        vote = await client.post("/api/votes", json=body)
        user = await client.get(f"/api/users/{body['userId']}")
        stats = await client.get("/api/stats")
        ready = await client.get("/health/ready")
    assert vote.status_code == 200
    assert vote.json()["success"] is True
    assert user.json()["totalVotes"] == 1
    assert stats.json()["totalVotes"] == 1
    assert ready.json()["status"] == "healthy"


@pytest.mark.anyio
async def test_nginx_spreads_requests_over_both_instances(nginx_stack):
    async with nginx_stack.nginx.client() as client:
        instances = {(await client.get("/health/ready")).json()["instance"] for _ in range(6)}
    assert len(instances) == 2


@pytest.mark.anyio
async def test_responses_carry_the_security_headers(nginx_stack):
    async with nginx_stack.nginx.client() as client:
        r = await client.post("/api/votes", json=vote_body())
    assert r.headers["strict-transport-security"].startswith("max-age=")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "server" not in r.headers or "nginx/" not in r.headers["server"]


@pytest.mark.anyio
async def test_plain_http_is_redirected_to_https(nginx_stack):
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{nginx_stack.nginx.http_url}/api/stats")
    assert r.status_code == 301
    assert r.headers["location"] == "https://127.0.0.1/api/stats"


@pytest.mark.anyio
async def test_large_json_is_gzipped_through_nginx(nginx_stack):
    async with nginx_stack.nginx.client() as client:
        r = await client.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert r.json()["paths"]


@pytest.mark.anyio
async def test_metrics_are_not_public_through_nginx(nginx_stack):
    async with nginx_stack.nginx.client() as client:
        r = await client.get("/metrics")
    assert r.status_code == 404
    assert b"realtube_" not in r.content


# --- proxy cache --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_second_hash_prefix_lookup_within_5s_is_a_cache_hit(nginx_stack):
    body = vote_body()
    async with nginx_stack.nginx.client() as client:
        assert (await client.post("/api/votes", json=body)).status_code == 200
        prefix = entity_hash(body["videoId"])[:6]
        started = time.monotonic()
        first = await client.get(f"/api/videos/{prefix}")
        second = await client.get(f"/api/videos/{prefix}")
        elapsed = time.monotonic() - started
    assert elapsed < 5
    assert first.status_code == 200
    assert first.headers["x-cache-status"] == "MISS"
    assert second.headers["x-cache-status"] == "HIT"
    assert second.json() == first.json()
    assert body["videoId"] in {v["videoId"] for v in second.json()}


@pytest.mark.anyio
async def test_votes_and_sync_delta_are_never_cached(nginx_stack):
    async with nginx_stack.nginx.client() as client:
        votes = [await client.post("/api/votes", json=vote_body()) for _ in range(2)]
        deltas = [await client.get("/api/sync/delta", params={"cursor": "0"}) for _ in range(2)]
    for r in [*votes, *deltas]:
        assert r.status_code == 200
        assert "x-cache-status" not in r.headers


# --- nginx's rate limit -------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_burst_of_votes_from_one_client_gets_nginx_429(nginx_stack):
    async with nginx_stack.nginx.client() as client:
        started = time.monotonic()
        responses = [await client.post("/api/votes", json=vote_body()) for _ in range(12)]
        elapsed = time.monotonic() - started
    # 10/min with a burst of 5: one request plus five of burst pass at once, then the
    # bucket frees one slot every 6 s, which this loop is far quicker than.
    assert elapsed < 6
    assert [r.status_code for r in responses] == [200] * 6 + [429] * 6
    refused = responses[-1]
    assert refused.json() == {
        "error": {
            "code": "RATE_LIMITED",
            "message": "Too many requests. Try again in 6 seconds.",
            "retryAfter": 6,
        }
    }
    assert refused.headers["retry-after"] == "6"
    # nginx's refusal, not the app's (whose limits are off here and which would add these)
    assert "x-ratelimit-limit" not in refused.headers


# --- the address the app rate-limits ------------------------------------------------------

LIMITED = {"RATE_LIMITS_ENABLED": "true", "RATE_LIMIT_VIDEOS": "3"}


async def lookups(client: httpx.AsyncClient, forged: list[str]) -> list[tuple[int, str | None]]:
    """One hash-prefix lookup per forged X-Forwarded-For value: (status, remaining)."""
    seen = []
    for address in forged:
        r = await client.get(
            f"/api/videos/{random_prefix()}",
            headers={"X-Forwarded-For": address, "X-Real-IP": address},
        )
        seen.append((r.status_code, r.headers.get("x-ratelimit-remaining")))
    return seen


FORGED = ["198.51.100.1", "198.51.100.2", "198.51.100.3, 203.0.113.7", "203.0.113.9"]
# Limit 3: the fourth lookup is refused if, and only if, all four counted for one address.
ONE_BUDGET = [(404, "2"), (404, "1"), (404, "0"), (429, "0")]


@pytest.mark.anyio
async def test_forged_forwarded_for_sent_straight_to_an_app_does_not_change_its_address(
    nginx_stack_factory,
):
    stack = nginx_stack_factory(**LIMITED)
    async with direct_client(stack.apps[0], "127.0.0.2") as client:
        assert await lookups(client, FORGED) == ONE_BUDGET
    # The budget is per address, not global: another direct client still has all of it.
    async with direct_client(stack.apps[0], "127.0.0.3") as other:
        assert await lookups(other, ["198.51.100.1"]) == [(404, "2")]


@pytest.mark.anyio
async def test_the_app_limits_the_client_address_nginx_forwards(nginx_stack_factory):
    stack = nginx_stack_factory(**LIMITED)
    # Forged values arrive at the app too, followed by the address nginx saw: that one counts.
    async with stack.nginx.client(local_address="127.0.0.2") as client:
        assert await lookups(client, FORGED) == ONE_BUDGET
    # Another client behind the same nginx has its own budget: the app limits clients, not
    # the proxy's address.
    async with stack.nginx.client(local_address="127.0.0.3") as other:
        assert await lookups(other, ["127.0.0.2"]) == [(404, "2")]
