"""The public database export: ``realtube-push export`` and ``GET /api/database/export``.

Real PostgreSQL, the real CLI in a subprocess, the real ``pg_dump``/``pg_restore``, and a real
server for the endpoint.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import asyncpg
import httpx
import pytest

from realtube_push.domain.ids import entity_hash
from realtube_push.export import find_pg_tool
from realtube_push.store import votes as vote_store
from tests.support import ids
from tests.support.databases import scratch_database
from tests.support.servers import REPO

pytestmark = pytest.mark.anyio

PRIVATE_COLUMNS = {"ip_hash", "is_shadowbanned", "weight", "user_agent", "reason", "last_active"}
SECRET = b"root:x:0:0:this-must-never-be-served"


class Seeded:
    """What the fixture wrote, to look for (or not) in the export."""

    def __init__(self) -> None:
        self.visible_videos = [ids.video_id() for _ in range(3)]
        self.hidden_video = ids.video_id()
        self.shadow_hidden_video = ids.video_id()
        self.users = [ids.user_id() for _ in range(3)]
        self.banned_user = self.users[2]
        self.channel = ids.channel_id()
        self.user_agent = f"RealTube/{secrets.token_hex(4)} (private agent)"
        self.vip_reason = f"private moderator note {secrets.token_hex(4)}"
        self.ip_hashes: list[str] = []

    @property
    def votes_visible(self) -> int:
        return len(self.visible_videos) * len(self.users)


@pytest.fixture
async def seeded(database_url: str) -> Seeded:
    """Votes cast through the vote store (with IP hashes and user agents), a shadowbanned
    user, a hidden and a shadow-hidden video, and a moderation note."""
    seed = Seeded()
    conn = await asyncpg.connect(database_url)
    try:
        for video in [*seed.visible_videos, seed.hidden_video, seed.shadow_hidden_video]:
            for n, user in enumerate(seed.users):
                ip = secrets.token_hex(16)
                seed.ip_hashes.append(ip)
                await vote_store.cast_vote(
                    conn,
                    vote_store.NewVote(
                        video_id=video,
                        video_hash=entity_hash(video),
                        user_id=user,
                        category=["fully_ai", "ai_voiceover", "ai_visuals"][n],
                        cast_at=datetime.now(UTC),
                        channel_id=seed.channel,
                        channel_hash=entity_hash(seed.channel),
                        ip_hash=ip,
                        user_agent=seed.user_agent,
                    ),
                )
        await conn.execute(
            "UPDATE users SET is_shadowbanned = true WHERE user_id = $1", seed.banned_user
        )
        await conn.execute("UPDATE videos SET hidden = true WHERE video_id = $1", seed.hidden_video)
        await conn.execute(
            "UPDATE videos SET shadow_hidden = true WHERE video_id = $1", seed.shadow_hidden_video
        )
        await conn.execute(
            "INSERT INTO vip_actions (actor, action, target_type, target_id, reason)"
            " VALUES ($1, 'shadowban', 'user', $2, $3)",
            seed.users[0],
            seed.banned_user,
            seed.vip_reason,
        )
    finally:
        await conn.close()
    return seed


async def run_export(
    database_url: str, export_dir: Path, **env: str
) -> subprocess.CompletedProcess[bytes]:
    """``realtube-push export`` as a subprocess; returns the finished process."""
    full_env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "EXPORT_DIR": str(export_dir),
        "ENVIRONMENT": "test",
        **env,
    }
    return await anyio.run_process(
        [sys.executable, "-m", "realtube_push", "export"], cwd=REPO, env=full_env, check=False
    )


def today() -> str:
    return datetime.now(UTC).date().isoformat()


@pytest.fixture
async def exported(database_url: str, seeded: Seeded, tmp_path: Path) -> Path:
    """The export directory after one successful run on the seeded database."""
    result = await run_export(database_url, tmp_path / "exports")
    assert result.returncode == 0, result.stderr.decode()
    return tmp_path / "exports"


@pytest.fixture
async def empty_database(stack) -> AsyncIterator[str]:
    """A database with nothing in it (not even our schema), dropped afterwards."""
    async with scratch_database(stack, prefix="rt_restore", template="template0") as url:
        yield url


async def pg_restore(*args: str) -> bytes:
    result = await anyio.run_process([find_pg_tool("pg_restore"), *args], check=False)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


# --- realtube-push export ---------------------------------------------------------------


async def test_export_writes_a_dump_and_a_csv_bundle_named_by_the_utc_day(exported):
    names = sorted(p.name for p in exported.iterdir())
    assert names == [f"realtube-db-{today()}.csv.zip", f"realtube-db-{today()}.dump"]


async def test_dump_restores_into_an_empty_database_with_the_visible_videos_and_votes(
    exported, seeded, empty_database
):
    dump = exported / f"realtube-db-{today()}.dump"
    await pg_restore("--exit-on-error", "--no-owner", f"--dbname={empty_database}", str(dump))
    conn = await asyncpg.connect(empty_database)
    try:
        videos = {r["video_id"] for r in await conn.fetch("SELECT video_id FROM videos")}
        votes = await conn.fetch("SELECT video_id, category FROM votes ORDER BY video_id")
        categories = await conn.fetchval("SELECT count(*) FROM video_categories")
        channels = await conn.fetchval("SELECT count(*) FROM channels")
        users = await conn.fetchval("SELECT count(*) FROM users")
    finally:
        await conn.close()
    assert videos == set(seeded.visible_videos)
    assert len(votes) == seeded.votes_visible
    assert {r["video_id"] for r in votes} == set(seeded.visible_videos)
    assert {r["category"] for r in votes} == {"fully_ai", "ai_voiceover", "ai_visuals"}
    assert categories == len(seeded.visible_videos) * 3
    assert channels == 1
    assert users == len(seeded.users)


async def test_dump_holds_no_ip_hash_no_shadowban_and_no_raw_user_id(
    exported, seeded, empty_database
):
    dump = exported / f"realtube-db-{today()}.dump"
    script = await pg_restore("--file=-", str(dump))  # the whole dump as SQL text
    for secret in [
        *seeded.ip_hashes,
        *seeded.users,
        seeded.user_agent,
        seeded.vip_reason,
        seeded.hidden_video,
        seeded.shadow_hidden_video,
    ]:
        assert secret.encode() not in script
    await pg_restore("--exit-on-error", "--no-owner", f"--dbname={empty_database}", str(dump))
    conn = await asyncpg.connect(empty_database)
    try:
        tables = {
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
        columns = {
            r["column_name"]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'"
            )
        }
    finally:
        await conn.close()
    assert tables == {"channels", "videos", "video_categories", "users", "votes"}
    assert not columns & PRIVATE_COLUMNS


async def test_csv_bundle_holds_the_same_tables_with_headers_and_no_private_columns(
    exported, seeded
):
    bundle = exported / f"realtube-db-{today()}.csv.zip"
    with zipfile.ZipFile(bundle) as archive:
        tables = {
            name: list(csv.DictReader(io.TextIOWrapper(archive.open(name), encoding="utf-8")))
            for name in archive.namelist()
        }
        raw = b"".join(archive.read(name) for name in archive.namelist())
    assert set(tables) == {
        "channels.csv",
        "videos.csv",
        "video_categories.csv",
        "users.csv",
        "votes.csv",
    }
    assert {row["video_id"] for row in tables["videos.csv"]} == set(seeded.visible_videos)
    assert len(tables["votes.csv"]) == seeded.votes_visible
    for rows in tables.values():
        assert not set(rows[0]) & PRIVATE_COLUMNS
    for secret in [*seeded.ip_hashes, *seeded.users, seeded.user_agent, seeded.vip_reason]:
        assert secret.encode() not in raw


async def test_only_the_newest_export_keep_files_of_each_kind_are_kept(database_url, tmp_path):
    export_dir = tmp_path / "exports"
    export_dir.mkdir()
    for day in ("2020-01-01", "2020-01-02", "2020-01-03"):
        (export_dir / f"realtube-db-{day}.dump").write_bytes(b"old")
        (export_dir / f"realtube-db-{day}.csv.zip").write_bytes(b"old")
    (export_dir / "notes.txt").write_text("not ours: never touched")
    result = await run_export(database_url, export_dir, EXPORT_KEEP="2")
    assert result.returncode == 0, result.stderr.decode()
    assert sorted(p.name for p in export_dir.iterdir()) == [
        "notes.txt",
        "realtube-db-2020-01-03.csv.zip",
        "realtube-db-2020-01-03.dump",
        f"realtube-db-{today()}.csv.zip",
        f"realtube-db-{today()}.dump",
    ]


async def test_failed_export_leaves_no_file_and_no_scratch_database(database_url, tmp_path):
    export_dir = tmp_path / "exports"
    result = await run_export(database_url, export_dir, PG_DUMP_PATH="/bin/false")
    assert result.returncode == 1
    assert b"pg_dump exited with 1" in result.stderr
    assert list(export_dir.iterdir()) == []
    conn = await asyncpg.connect(database_url)
    try:
        leftovers = await conn.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname = current_database() || '__export'"
        )
    finally:
        await conn.close()
    assert leftovers == 0


# --- GET /api/database/export -----------------------------------------------------------


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    """An export directory with two days of (stand-in) exports, and a secret beside it."""
    directory = tmp_path / "exports"
    directory.mkdir()
    for day in ("2026-01-01", "2026-01-02"):
        (directory / f"realtube-db-{day}.dump").write_bytes(f"dump of {day}".encode())
        (directory / f"realtube-db-{day}.csv.zip").write_bytes(f"csv of {day}".encode())
    (tmp_path / "secret.txt").write_bytes(SECRET)
    return directory


async def test_endpoint_serves_the_newest_dump_as_an_attachment(servers, export_dir):
    server = servers.start(EXPORT_DIR=str(export_dir))
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.get("/api/database/export")
    assert r.status_code == 200
    assert r.content == b"dump of 2026-01-02"
    assert r.headers["content-disposition"] == (
        'attachment; filename="realtube-db-2026-01-02.dump"'
    )
    assert r.headers["content-type"] == "application/octet-stream"


async def test_csv_format_serves_the_newest_csv_bundle(servers, export_dir):
    server = servers.start(EXPORT_DIR=str(export_dir))
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.get("/api/database/export", params={"format": "csv"})
    assert r.status_code == 200
    assert r.content == b"csv of 2026-01-02"
    assert r.headers["content-disposition"] == (
        'attachment; filename="realtube-db-2026-01-02.csv.zip"'
    )
    assert r.headers["content-type"] == "application/zip"


async def test_a_real_export_is_served_byte_for_byte(servers, exported):
    server = servers.start(EXPORT_DIR=str(exported))
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.get("/api/database/export")
    assert r.status_code == 200
    assert r.content == (exported / f"realtube-db-{today()}.dump").read_bytes()


async def test_endpoint_is_404_before_the_first_export(servers, tmp_path):
    server = servers.start(EXPORT_DIR=str(tmp_path / "never-written"))
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.get("/api/database/export")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    "query",
    [
        "format=../../etc/passwd",
        "format=..%2F..%2Fsecret.txt",
        "format=%2e%2e%2fsecret.txt",
        "format=dump/../../secret.txt",
        "format=dump%00",
        "format=csv.zip",
        "format=DUMP",
        "format=",
        "format=realtube-db-2026-01-01.dump",
    ],
)
async def test_any_other_format_is_400_and_serves_no_file(servers, export_dir, query):
    server = servers.start(EXPORT_DIR=str(export_dir))
    async with httpx.AsyncClient(base_url=server.url) as client:
        request = client.build_request("GET", f"/api/database/export?{query}")
        assert request.url.query.decode() == query  # sent exactly as written
        r = await client.send(request)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_PARAM"
    assert b"dump of" not in r.content
    assert SECRET not in r.content


@pytest.mark.parametrize(
    "path",
    [
        "/api/database/export/..%2F..%2Fsecret.txt",
        "/api/database/export/%2e%2e/%2e%2e/secret.txt",
        "/api/database/export%2F..%2F..%2Fsecret.txt",
        "/api/database/%2e%2e/%2e%2e/secret.txt",
        "/api/database/export/realtube-db-2026-01-01.dump",
    ],
)
async def test_path_tricks_in_the_url_serve_no_file(servers, export_dir, path):
    server = servers.start(EXPORT_DIR=str(export_dir))
    async with httpx.AsyncClient(base_url=server.url) as client:
        request = client.build_request("GET", path)
        assert request.url.raw_path.decode() == path  # no client-side normalisation
        r = await client.send(request)
    assert r.status_code in (400, 404)
    assert b"dump of" not in r.content
    assert SECRET not in r.content


async def test_a_symlink_named_like_an_export_is_never_followed(servers, export_dir):
    (export_dir / "realtube-db-2099-12-31.dump").symlink_to(export_dir.parent / "secret.txt")
    server = servers.start(EXPORT_DIR=str(export_dir))
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.get("/api/database/export")
    assert r.status_code == 200
    assert r.content == b"dump of 2026-01-02"


async def test_second_download_within_the_hour_is_429(servers, export_dir):
    server = servers.start(EXPORT_DIR=str(export_dir), RATE_LIMITS_ENABLED="true")
    async with httpx.AsyncClient(base_url=server.url) as client:
        first = await client.get("/api/database/export")
        second = await client.get("/api/database/export", params={"format": "csv"})
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit"] == "1"
    assert second.status_code == 429
    body = second.json()["error"]
    assert body["code"] == "RATE_LIMITED"
    assert 3500 < body["retryAfter"] <= 3600
    assert second.headers["retry-after"] == str(body["retryAfter"])
    assert b"csv of" not in second.content
