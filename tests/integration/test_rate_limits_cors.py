"""Rate limits (per user, per IP, per X-User-ID) and CORS, as a browser extension meets them."""

from __future__ import annotations

import secrets

import httpx
import pytest

from tests.support import ids, pg

VOTE_LIMIT = 3
LOOKUP_LIMIT = 3
SYNC_LIMIT = 2
SYNC_CEILING = 5
EXTENSION = "chrome-extension://abc"

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.server_env(
        RATE_LIMITS_ENABLED="true",
        RATE_LIMIT_VOTES=str(VOTE_LIMIT),
        RATE_LIMIT_VIDEOS=str(LOOKUP_LIMIT),
        RATE_LIMIT_SYNC=str(SYNC_LIMIT),
        RATE_LIMIT_SYNC_PER_IP=str(SYNC_CEILING),
        # loopback is the proxy: each test is "another client" by its X-Forwarded-For
        TRUSTED_PROXIES="127.0.0.1/32",
    ),
]


@pytest.fixture
async def client(server):
    """A client with an address of its own, so IP-keyed limits start fresh for each test."""
    address = f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
    async with httpx.AsyncClient(
        base_url=server.url, headers={"X-Forwarded-For": address}
    ) as client:
        yield client


async def post_vote(client, user: str) -> httpx.Response:
    body = {"videoId": ids.video_id(), "category": "fully_ai", "userId": user}
    return await client.post("/api/votes", json=body)


async def test_limited_responses_carry_rate_limit_headers(client):
    r = await post_vote(client, ids.user_id())

    assert r.status_code == 200
    assert r.headers["X-RateLimit-Limit"] == str(VOTE_LIMIT)
    assert r.headers["X-RateLimit-Remaining"] == str(VOTE_LIMIT - 1)
    assert 0 < int(r.headers["X-RateLimit-Reset"]) <= 60


async def test_remaining_counts_down_with_each_request(client):
    user = ids.user_id()

    remaining = [int((await post_vote(client, user)).headers["X-RateLimit-Remaining"])
                 for _ in range(VOTE_LIMIT)]  # fmt: skip

    assert remaining == list(range(VOTE_LIMIT - 1, -1, -1))


async def test_vote_past_the_limit_is_429_with_retry_after(client):
    user = ids.user_id()
    for _ in range(VOTE_LIMIT):
        assert (await post_vote(client, user)).status_code == 200

    r = await post_vote(client, user)

    assert r.status_code == 429
    error = r.json()["error"]
    assert error["code"] == "RATE_LIMITED"
    assert error["message"]
    assert 0 < error["retryAfter"] <= 60
    assert r.headers["Retry-After"] == str(error["retryAfter"])
    assert r.headers["X-RateLimit-Remaining"] == "0"


async def test_refused_vote_is_not_recorded(client, server):
    user = ids.user_id()
    for _ in range(VOTE_LIMIT):
        await post_vote(client, user)

    refused = await post_vote(client, user)

    assert refused.status_code == 429
    votes = await pg.fetchval(
        server.env["DATABASE_URL"], "SELECT count(*) FROM votes WHERE user_id = $1", user
    )
    assert votes == VOTE_LIMIT


async def test_vote_limit_is_per_user(client):
    limited, other = ids.user_id(), ids.user_id()
    for _ in range(VOTE_LIMIT + 1):
        await post_vote(client, limited)

    r = await post_vote(client, other)

    assert r.status_code == 200


async def test_prefix_lookups_are_limited_per_address(client, server):
    for _ in range(LOOKUP_LIMIT):
        assert (await client.get("/api/videos/abcd")).status_code == 404

    limited = await client.get("/api/videos/abcd")
    async with httpx.AsyncClient(
        base_url=server.url, headers={"X-Forwarded-For": "192.0.2.77"}
    ) as elsewhere:
        other = await elsewhere.get("/api/videos/abcd")

    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "RATE_LIMITED"
    assert other.status_code == 404


@pytest.mark.parametrize("path", ["/api/sync/delta?cursor=0", "/api/sync/full"])
async def test_sync_is_limited_per_x_user_id(client, path):
    user, other = ids.user_id(), ids.user_id()
    for _ in range(SYNC_LIMIT):
        assert (await client.get(path, headers={"X-User-ID": user})).status_code == 200

    limited = await client.get(path, headers={"X-User-ID": user})
    elsewhere = await client.get(path, headers={"X-User-ID": other})

    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "RATE_LIMITED"
    assert elsewhere.status_code == 200


@pytest.mark.parametrize("path", ["/api/sync/delta?cursor=0", "/api/sync/full"])
async def test_a_fresh_x_user_id_per_request_is_refused_past_the_address_ceiling(client, path):
    answered = [
        (await client.get(path, headers={"X-User-ID": ids.user_id()})).status_code
        for _ in range(SYNC_CEILING)
    ]

    refused = await client.get(path, headers={"X-User-ID": ids.user_id()})

    assert answered == [200] * SYNC_CEILING
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    assert refused.headers["X-RateLimit-Limit"] == str(SYNC_CEILING)


async def test_allowed_origin_gets_cors_headers_exposing_the_rate_limit(client):
    r = await client.get("/api/videos/abcd", headers={"Origin": EXTENSION})

    assert r.headers["Access-Control-Allow-Origin"] == EXTENSION
    exposed = {h.strip().lower() for h in r.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after"} <= (
        exposed
    )


async def test_refusal_is_readable_by_an_allowed_origin(client):
    user = ids.user_id()
    for _ in range(VOTE_LIMIT):
        await post_vote(client, user)

    r = await client.post(
        "/api/votes",
        json={"videoId": ids.video_id(), "category": "fully_ai", "userId": user},
        headers={"Origin": EXTENSION},
    )

    assert r.status_code == 429
    assert r.headers["Access-Control-Allow-Origin"] == EXTENSION


async def test_disallowed_origin_gets_no_allow_origin(client):
    r = await client.get("/api/videos/abcd", headers={"Origin": "https://evil.example"})

    assert "Access-Control-Allow-Origin" not in r.headers


async def test_preflight_allows_the_extension_to_post_votes(client):
    r = await client.options(
        "/api/votes",
        headers={
            "Origin": "moz-extension://0f1e2d",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )

    assert r.status_code in (200, 204)
    assert r.headers["Access-Control-Allow-Origin"] == "moz-extension://0f1e2d"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "content-type" in r.headers["Access-Control-Allow-Headers"].lower()
