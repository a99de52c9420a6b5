"""Input no well-behaved client sends: NUL characters, lone surrogates, absurd paths.

Every string a client controls (body fields, path and query parameters, headers) is tried
with a NUL and with an unpaired surrogate. The contract: a 4xx in the error format, never a
5xx, and nothing written to the database.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.support import ids, pg
from tests.support.api import prefix, vote
from tests.support.polling import eventually

TOKEN = "hostile-input-admin-token"
pytestmark = [pytest.mark.anyio, pytest.mark.server_env(ADMIN_TOKEN=TOKEN)]

NUL = "\x00"
SURROGATE = "\ud800"
# A surrogate cannot be written in a URL: its UTF-8 form (ED A0 80) is invalid UTF-8.
URL_SURROGATE = "%ED%A0%80"

TABLES = ("users", "videos", "channels", "votes", "video_categories", "vip_actions", "ip_hashes")


@pytest.fixture
async def admin(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        r = await client.post("/api/admin/login", json={"token": TOKEN})
        assert r.status_code == 200, r.text
        yield client


@pytest.fixture(scope="module")
def target() -> dict[str, str]:
    """A video, channel and user that exist (voted once), for the moderation routes."""
    return {"video": ids.video_id(), "channel": ids.channel_id(), "user": ids.user_id()}


@pytest.fixture
async def existing(client, server, target) -> dict[str, str]:
    db = server.env["DATABASE_URL"]
    if not await pg.fetchval(db, "SELECT count(*) FROM votes WHERE user_id = $1", target["user"]):
        await vote(client, target["video"], user_id=target["user"], channelId=target["channel"])
        await eventually(lambda: pg.scored(db, [target["video"]]), what="video scored")
    return target


async def table_counts(database_url: str) -> dict[str, int]:
    return {
        table: await pg.fetchval(database_url, f"SELECT count(*) FROM {table}") for table in TABLES
    }


def raw_json(body: dict[str, object]) -> dict[str, object]:
    """``httpx`` keyword arguments sending ``body`` with every non-ASCII character escaped, so
    a lone surrogate travels as the JSON escape ``\\ud800`` (it has no UTF-8 form)."""
    return {
        "content": json.dumps(body, ensure_ascii=True).encode(),
        "headers": {"Content-Type": "application/json"},
    }


def vote_body() -> dict[str, object]:
    return {
        "videoId": ids.video_id(),
        "category": "fully_ai",
        "userId": ids.user_id(),
        "userAgent": "Mozilla/5.0",
        "channelId": ids.channel_id(),
        "timestamp": "2026-01-01T00:00:00Z",
    }


def assert_refused(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]


VOTE_FIELDS = {
    "videoId": "INVALID_FIELD",
    "category": "INVALID_CATEGORY",
    "userId": "INVALID_FIELD",
    "userAgent": "INVALID_FIELD",
    "channelId": "INVALID_FIELD",
    "timestamp": "INVALID_FIELD",
}


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize("field", list(VOTE_FIELDS))
async def test_vote_with_a_nul_or_surrogate_in_any_field_is_400_and_writes_nothing(
    client, server, field, bad
):
    body = vote_body()
    body[field] = f"{body[field]}{bad}"
    before = await table_counts(server.env["DATABASE_URL"])

    r = await client.post("/api/votes", **raw_json(body))

    # a lone surrogate makes the whole body invalid text, before any field is looked at
    assert_refused(r, 400, VOTE_FIELDS[field] if bad == NUL else "INVALID_FIELD")
    assert await table_counts(server.env["DATABASE_URL"]) == before


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
async def test_a_nul_or_surrogate_in_a_field_name_is_400(client, server, bad):
    body = {**vote_body(), f"user{bad}Agent": "x"}
    before = await table_counts(server.env["DATABASE_URL"])

    r = await client.post("/api/votes", **raw_json(body))

    assert_refused(r, 400, "INVALID_FIELD")
    assert await table_counts(server.env["DATABASE_URL"]) == before


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize("field", ["videoId", "userId"])
async def test_vote_withdrawal_with_a_nul_or_surrogate_is_400_and_deletes_nothing(
    client, server, existing, field, bad
):
    body = {"videoId": existing["video"], "userId": existing["user"]}
    body[field] = f"{body[field]}{bad}"
    before = await table_counts(server.env["DATABASE_URL"])

    r = await client.request("DELETE", "/api/votes", **raw_json(body))

    assert_refused(r, 400, "INVALID_FIELD")
    assert await table_counts(server.env["DATABASE_URL"]) == before


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
async def test_admin_login_with_a_nul_or_surrogate_in_the_token_is_400(client, bad):
    r = await client.post("/api/admin/login", **raw_json({"token": f"{TOKEN}{bad}"}))

    assert_refused(r, 400, "INVALID_FIELD")
    assert "set-cookie" not in r.headers


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize(
    ("kind", "action"), [("videos", "lock"), ("channels", "lock"), ("users", "shadowban")]
)
async def test_moderation_reason_with_a_nul_or_surrogate_is_400_and_records_nothing(
    admin, server, existing, kind, action, bad
):
    target = {"videos": existing["video"], "channels": existing["channel"]}.get(
        kind, existing["user"]
    )
    before = await table_counts(server.env["DATABASE_URL"])
    flags_before = await moderation_flags(server.env["DATABASE_URL"], existing)

    r = await admin.post(
        f"/api/admin/{kind}/{target}/{action}", **raw_json({"reason": f"spam{bad}here"})
    )

    assert_refused(r, 400, "INVALID_FIELD")
    assert await table_counts(server.env["DATABASE_URL"]) == before
    assert await moderation_flags(server.env["DATABASE_URL"], existing) == flags_before


async def moderation_flags(database_url: str, existing: dict[str, str]) -> tuple[object, ...]:
    return (
        await pg.fetchval(
            database_url, "SELECT locked FROM videos WHERE video_id = $1", existing["video"]
        ),
        await pg.fetchval(
            database_url, "SELECT locked FROM channels WHERE channel_id = $1", existing["channel"]
        ),
        await pg.fetchval(
            database_url,
            "SELECT is_shadowbanned FROM users WHERE user_id = $1",
            existing["user"],
        ),
    )


# (path with {bad} where the hostile text goes, status, code); {prefix} is a valid prefix
QUERIES = [
    ("/api/videos/ab{bad}cd", 400, "INVALID_PREFIX"),
    ("/api/videos/{prefix}?categories=fully_ai{bad}", 400, "INVALID_CATEGORY"),
    ("/api/videos/{prefix}?minScore=1{bad}", 400, "INVALID_PARAM"),
    ("/api/videos?videoId=abc{bad}", 400, "INVALID_FIELD"),
    ("/api/channels/UC{bad}x", 400, "INVALID_FIELD"),
    ("/api/users/ab{bad}cd", 400, "INVALID_FIELD"),
    ("/api/sync/delta?since=2026-01-01T00:00:00Z{bad}", 400, "INVALID_PARAM"),
    ("/api/sync/delta?cursor=1{bad}", 400, "INVALID_PARAM"),
    ("/api/database/export?format=csv{bad}", 400, "INVALID_PARAM"),
    ("/api/live/sse?epoch=e&seq=1{bad}", 400, "INVALID_PARAM"),
    ("/api/live/sse?buckets=ab{bad}", 400, "INVALID_PARAM"),
    ("/api/live/sse?channels=1{bad}", 400, "INVALID_PARAM"),
]
ADMIN_QUERIES = [
    ("/api/admin/audit?limit=5{bad}", 400, "INVALID_PARAM"),
    ("/api/admin/top?limit=5{bad}", 400, "INVALID_PARAM"),
    ("/api/admin/auto-flagged?hours=5{bad}", 400, "INVALID_PARAM"),
    ("/api/admin/auto-flagged?limit=5{bad}", 400, "INVALID_PARAM"),
]


@pytest.mark.parametrize("bad", ["%00", URL_SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize(("path", "status", "code"), QUERIES, ids=[q[0] for q in QUERIES])
async def test_a_nul_or_surrogate_in_a_path_or_query_parameter_is_refused(
    client, server, path, status, code, bad
):
    before = await table_counts(server.env["DATABASE_URL"])

    r = await client.get(path.format(bad=bad, prefix=prefix(ids.video_id())))

    assert_refused(r, status, code)
    assert await table_counts(server.env["DATABASE_URL"]) == before


@pytest.mark.parametrize("bad", ["%00", URL_SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize(
    ("path", "status", "code"), ADMIN_QUERIES, ids=[q[0] for q in ADMIN_QUERIES]
)
async def test_a_nul_or_surrogate_in_an_admin_query_parameter_is_refused(
    admin, path, status, code, bad
):
    r = await admin.get(path.format(bad=bad))

    assert_refused(r, status, code)


@pytest.mark.parametrize("bad", ["%00", URL_SURROGATE], ids=["nul", "surrogate"])
@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/admin/videos/ab{bad}c/lock", 400, "INVALID_FIELD"),
        ("/api/admin/channels/UC{bad}/lock", 400, "INVALID_FIELD"),
        ("/api/admin/users/ab{bad}/shadowban", 400, "INVALID_FIELD"),
        ("/api/admin/videos/{video}/lo{bad}ck", 404, "NOT_FOUND"),
    ],
)
async def test_a_nul_or_surrogate_in_a_moderation_path_is_refused_and_records_nothing(
    admin, server, existing, path, status, code, bad
):
    before = await table_counts(server.env["DATABASE_URL"])

    r = await admin.post(path.format(bad=bad, video=existing["video"]), json={"reason": "x"})

    assert_refused(r, status, code)
    assert await table_counts(server.env["DATABASE_URL"]) == before


async def test_the_cursor_epoch_is_only_compared_so_a_nul_there_means_resync(client):
    r = await client.get("/api/sync/delta?cursor=0&epoch=e%00x")

    assert r.status_code == 200
    assert r.json()["resync"] is True


def raw_request(url: str, request: bytes) -> bytes:
    """Send ``request`` as it is on a new connection and return the status line."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(4096).split(b"\r\n", 1)[0]


@pytest.mark.parametrize("header", ["X-User-ID", "X-Forwarded-For", "Origin", "Accept"])
def test_a_nul_in_a_header_is_refused_by_the_http_layer(server, header):
    request = f"GET /api/sync/full HTTP/1.1\r\nHost: x\r\n{header}: ab\x00cd\r\n\r\n"

    status_line = raw_request(server.url, request.encode("latin-1"))

    assert status_line.startswith(b"HTTP/1.1 400")


async def test_invalid_utf8_in_x_user_id_is_not_a_user_id_and_is_ignored(client):
    r = await client.get("/api/sync/full", headers={"X-User-ID": b"ab\xed\xa0\x80cd"})

    assert r.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/client/" + "a" * 300,
        "/admin/" + "a" * 300,
        "/client/" + "é" * 200,
        "/admin/" + ("b" * 200 + "/") * 30,
        "/client/" + "c/" * 2100,
        "/client/a%00b",
        "/admin/vendor",
        "/admin/vendor/",
        "/client/%2e%2e/pyproject.toml",
        "/admin/..%2F..%2Fpyproject.toml",
    ],
    ids=lambda p: p[:40],
)
async def test_absurd_static_paths_are_404_in_the_error_format(client, path):
    r = await client.get(path)

    assert_refused(r, 404, "NOT_FOUND")
