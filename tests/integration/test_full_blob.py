"""The full-sync blob against the real database: content, position, ETag, encodings."""

from __future__ import annotations

import gzip
import hashlib
from datetime import UTC, datetime
from typing import Any

import msgpack
import orjson
import pytest

from realtube_push import fullblob
from realtube_push.domain.ids import entity_hash
from realtube_push.services import Services
from realtube_push.store import fullblob as blob_store
from realtube_push.store.votes import NewVote, cast_vote
from realtube_push.workers import score

pytestmark = pytest.mark.anyio

VOTERS = [f"{i:02x}" * 8 for i in range(3)]


async def trusted_voters(svc: Services) -> None:
    await svc.pool.execute(
        "INSERT INTO users (user_id, trust_score) SELECT unnest($1::text[]), 1.0", VOTERS
    )


async def flag(svc: Services, video_id: str, category: str = "fully_ai", voters: int = 3) -> None:
    """``voters`` full-trust votes on the video, scored by the score worker."""
    async with svc.pool.acquire() as conn:
        for user in VOTERS[:voters]:
            await cast_vote(
                conn,
                NewVote(
                    video_id=video_id,
                    video_hash=entity_hash(video_id),
                    user_id=user,
                    category=category,
                    cast_at=datetime.now(UTC),
                    channel_id="UCblob",
                    channel_hash=entity_hash("UCblob"),
                    ip_hash=None,
                    user_agent=None,
                ),
            )
    await score.drain(svc)


async def document(svc: Services, fmt: str = "json") -> dict[str, Any]:
    blob = await blob_store.load(svc.pool)
    assert blob is not None
    raw = gzip.decompress(blob.json_gzip if fmt == "json" else blob.msgpack_gzip)
    return orjson.loads(raw) if fmt == "json" else msgpack.unpackb(raw)


async def test_no_blob_before_the_first_build(services: Services) -> None:
    assert await blob_store.load_meta(services.pool) is None
    assert await blob_store.load(services.pool) is None


async def test_blob_position_matches_the_sync_log(services: Services) -> None:
    await trusted_voters(services)
    await flag(services, "vidA")

    assert await fullblob.rebuild(services.pool)

    meta = await blob_store.load_meta(services.pool)
    log = await services.pool.fetchrow("SELECT epoch, last_seq FROM sync_meta")
    assert meta is not None
    assert log["last_seq"] > 0
    assert (meta.cursor, meta.epoch) == (log["last_seq"], log["epoch"])
    doc = await document(services)
    assert (doc["cursor"], doc["epoch"]) == (log["last_seq"], log["epoch"])
    assert doc["generatedAt"].endswith("Z")


async def test_blob_holds_exactly_the_visible_videos_with_a_score(services: Services) -> None:
    await trusted_voters(services)
    await flag(services, "vidA")
    await flag(services, "vidB", category="ai_voiceover", voters=1)  # score 33.3
    await services.pool.execute(
        "INSERT INTO videos (video_id, video_hash, score, hidden, shadow_hidden) VALUES"
        " ('hid', 'h1', 90, true, false), ('shadow', 'h2', 90, false, true),"
        " ('zero', 'h3', 0, false, false)"
    )

    await fullblob.rebuild(services.pool)

    doc = await document(services)
    assert [v["videoId"] for v in doc["videos"]] == ["vidA", "vidB"]
    video_a = doc["videos"][0]
    assert video_a["score"] == 100.0
    assert video_a["categories"] == {"fully_ai": {"votes": 3, "weightedScore": 100.0}}
    assert (video_a["channelId"], video_a["totalVotes"], video_a["action"]) == (
        "UCblob",
        3,
        "update",
    )


async def test_blob_video_equals_its_latest_delta(services: Services) -> None:
    await trusted_voters(services)
    await flag(services, "vidA")

    await fullblob.rebuild(services.pool)

    delta = await services.pool.fetchval(
        "SELECT payload FROM sync_cache WHERE entity_id = 'vidA' ORDER BY seq DESC LIMIT 1"
    )
    assert (await document(services))["videos"] == [delta]


async def test_blob_holds_channels_with_a_score(services: Services) -> None:
    await services.pool.execute(
        "INSERT INTO channels (channel_id, channel_hash, score, total_videos, flagged_videos,"
        " top_categories) VALUES ('UCyes', 'c1', 64.5, 4, 3, '{fully_ai}'),"
        " ('UCno', 'c2', 0, 2, 0, '{}')"
    )

    await fullblob.rebuild(services.pool)

    [channel] = (await document(services))["channels"]
    assert channel["channelId"] == "UCyes"
    assert (channel["score"], channel["totalVideos"], channel["flaggedVideos"]) == (64.5, 4, 3)
    assert channel["topCategories"] == ["fully_ai"]


async def test_etag_stays_while_the_data_does_not_change(services: Services) -> None:
    await trusted_voters(services)
    await flag(services, "vidA")
    await fullblob.rebuild(services.pool)
    first = await blob_store.load_meta(services.pool)

    assert not await fullblob.rebuild(services.pool)

    assert await blob_store.load_meta(services.pool) == first


async def test_etag_changes_when_the_data_changes(services: Services) -> None:
    await trusted_voters(services)
    await flag(services, "vidA")
    await fullblob.rebuild(services.pool)
    first = await blob_store.load_meta(services.pool)

    await flag(services, "vidB")
    assert await fullblob.rebuild(services.pool)

    second = await blob_store.load_meta(services.pool)
    assert first is not None
    assert second is not None
    assert second.etag != first.etag
    assert second.cursor > first.cursor
    assert [v["videoId"] for v in (await document(services))["videos"]] == ["vidA", "vidB"]


async def test_both_gzip_bodies_decode_to_the_same_document(services: Services) -> None:
    await trusted_voters(services)
    await flag(services, "vidA")
    await services.pool.execute(
        "UPDATE channels SET score = 70, total_videos = 3, flagged_videos = 3"
    )

    await fullblob.rebuild(services.pool)

    as_json = await document(services, "json")
    assert await document(services, "msgpack") == as_json
    assert len(as_json["videos"]) == 1
    assert len(as_json["channels"]) == 1


async def test_etag_is_the_quoted_sha256_of_the_json_body(services: Services) -> None:
    await fullblob.rebuild(services.pool)

    blob = await blob_store.load(services.pool)
    assert blob is not None
    digest = hashlib.sha256(gzip.decompress(blob.json_gzip)).hexdigest()[:32]
    assert blob.meta.etag == f'"{digest}"'


async def test_empty_dataset_builds_an_empty_blob(services: Services) -> None:
    assert await fullblob.rebuild(services.pool)

    doc = await document(services)
    assert (doc["videos"], doc["channels"], doc["cursor"]) == ([], [], 0)


async def test_an_older_build_never_replaces_a_newer_one(services: Services) -> None:
    await trusted_voters(services)
    await flag(services, "vidA")
    await fullblob.rebuild(services.pool)
    current = await blob_store.load_meta(services.pool)
    assert current is not None

    saved = await blob_store.save(
        services.pool,
        generated_at=datetime.now(UTC),
        epoch=current.epoch,
        cursor=current.cursor - 1,
        etag='"old"',
        json_gzip=b"",
        msgpack_gzip=b"",
    )

    assert not saved
    assert await blob_store.load_meta(services.pool) == current
