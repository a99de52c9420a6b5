"""GET /api/sync/delta and GET /api/sync/full as the contract describes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import msgpack
import pytest

from tests.support import ids, pg
from tests.support.api import vote
from tests.support.polling import eventually

# the full blob follows the log within a fraction of a second instead of a minute
pytestmark = [pytest.mark.anyio, pytest.mark.server_env(FULL_BLOB_INTERVAL_SECONDS="0.1")]

MSGPACK = {"Accept": "application/msgpack"}


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def scored_videos(client, db_url, count: int) -> list[str]:
    """``count`` fresh voted videos, once the score worker has logged them."""
    videos = [ids.video_id() for _ in range(count)]
    for video in videos:
        await vote(client, video)
    await eventually(lambda: pg.scored(db_url, videos), what="videos scored")
    return videos


async def delta(client, **params) -> dict:
    r = await client.get("/api/sync/delta", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def delta_ids(body: dict) -> set[str]:
    return {v["videoId"] for v in body["videos"]}


async def test_delta_without_since_or_cursor_is_400_missing_param(client):
    r = await client.get("/api/sync/delta")

    assert r.status_code == 400
    assert r.json()["error"]["code"] == "MISSING_PARAM"


@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday"},
        {"since": ""},
        {"since": "in five minutes"},  # computed when the test runs, not when it is collected
        {"cursor": "abc"},
        {"cursor": "-1"},
        {"cursor": ""},
    ],
    ids=["since-words", "since-empty", "since-future", "cursor-words", "cursor-negative",
         "cursor-empty"],
)  # fmt: skip
async def test_bad_since_or_cursor_is_400_invalid_param(client, params):
    if params.get("since") == "in five minutes":
        params = {"since": rfc3339(datetime.now(UTC) + timedelta(minutes=5))}
    r = await client.get("/api/sync/delta", params=params)

    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_PARAM"


async def test_since_a_few_seconds_in_the_future_is_accepted(client):
    soon = rfc3339(datetime.now(UTC) + timedelta(seconds=20))

    body = await delta(client, since=soon)

    assert body["videos"] == []


async def test_delta_since_a_time_lists_videos_scored_after_it(client, db_url):
    since = rfc3339(datetime.now(UTC) - timedelta(seconds=1))
    [video] = await scored_videos(client, db_url, 1)

    body = await delta(client, since=since)

    [entry] = [v for v in body["videos"] if v["videoId"] == video]
    assert entry["action"] == "update"
    assert entry["score"] > 0
    assert entry["categories"] == {"fully_ai": {"votes": 1, "weightedScore": 100.0}}
    assert "channelId" in entry
    assert body["syncTimestamp"].endswith("Z")
    assert isinstance(body["channels"], list)


async def test_cursor_pages_follow_the_log_without_gaps(client, db_url):
    start = await delta(client, cursor=0)
    epoch, cursor = start["epoch"], start["cursor"]
    first = await scored_videos(client, db_url, 2)

    page1 = await delta(client, cursor=cursor, epoch=epoch)
    second = await scored_videos(client, db_url, 1)
    page2 = await delta(client, cursor=page1["cursor"], epoch=epoch)
    page3 = await delta(client, cursor=page2["cursor"], epoch=epoch)

    assert set(first) <= delta_ids(page1)
    assert not set(second) & delta_ids(page1)
    assert set(second) <= delta_ids(page2)
    assert not set(first) & delta_ids(page2)
    assert cursor < page1["cursor"] < page2["cursor"] == page3["cursor"]
    assert page3["videos"] == []
    assert page1["epoch"] == page2["epoch"] == epoch
    for before, page in ((cursor, page1), (page1["cursor"], page2)):
        assert all(before < v["seq"] <= page["cursor"] for v in page["videos"])
        assert not page.get("resync")


async def test_consecutive_pages_hold_every_logged_seq(client, db_url):
    await scored_videos(client, db_url, 3)
    last_seq = await pg.fetchval(db_url, "SELECT last_seq FROM sync_meta")
    epoch = (await delta(client, cursor=0))["epoch"]

    seen, cursor = [], 0
    while cursor < last_seq:
        page = await delta(client, cursor=cursor, epoch=epoch)
        assert page["cursor"] > cursor
        seen += [v["seq"] for v in page["videos"]]
        cursor = page["cursor"]

    logged = await pg.fetch(db_url, "SELECT DISTINCT ON (entity_id) seq FROM sync_cache"
                            " WHERE kind = 'video' ORDER BY entity_id, seq DESC")  # fmt: skip
    assert sorted(seen) == sorted(r["seq"] for r in logged)


async def test_cursor_and_since_together_answer_from_the_cursor(client, db_url):
    videos = await scored_videos(client, db_url, 1)
    since = rfc3339(datetime.now(UTC) - timedelta(hours=1))

    body = await delta(client, cursor=0, since=since)

    assert set(videos) <= delta_ids(body)
    assert "resync" not in body  # the cursor's answer, not the time's


async def test_cursor_with_a_malformed_since_is_400(client):
    r = await client.get("/api/sync/delta", params={"cursor": 0, "since": "yesterday"})

    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_PARAM"


async def test_cursor_of_another_epoch_answers_resync(client):
    current = await delta(client, cursor=0)

    body = await delta(client, cursor=1, epoch="not-this-epoch")

    assert body["resync"] is True
    assert body["epoch"] == current["epoch"]
    assert body["videos"] == []


async def test_cursor_beyond_the_log_answers_resync(client):
    current = await delta(client, cursor=0)

    body = await delta(client, cursor=current["cursor"] + 1000, epoch=current["epoch"])

    assert body["resync"] is True


async def test_delta_in_msgpack_decodes_to_the_json_body(client, db_url):
    await scored_videos(client, db_url, 2)

    as_json = await client.get("/api/sync/delta", params={"cursor": 0})
    as_msgpack = await client.get("/api/sync/delta", params={"cursor": 0}, headers=MSGPACK)

    assert as_msgpack.headers["content-type"].startswith("application/msgpack")
    decoded = msgpack.unpackb(as_msgpack.content)
    json_body = as_json.json()
    decoded.pop("syncTimestamp")
    json_body.pop("syncTimestamp")
    assert decoded == json_body


async def full_sync_with(client, video_id: str, **headers: str) -> httpx.Response:
    """GET /api/sync/full once the stored blob includes ``video_id``."""

    async def fetch() -> httpx.Response | None:
        r = await client.get("/api/sync/full", headers=headers)
        assert r.status_code == 200
        body = msgpack.unpackb(r.content) if "msgpack" in headers.get("Accept", "") else r.json()
        return r if video_id in {v["videoId"] for v in body["videos"]} else None

    return await eventually(fetch, what="full blob includes the video")


async def test_full_sync_is_gzip_with_an_etag(client, db_url):
    [video] = await scored_videos(client, db_url, 1)

    r = await full_sync_with(client, video, **{"Accept-Encoding": "gzip"})

    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["etag"].startswith('"')


async def test_full_sync_holds_the_synced_dataset_and_its_log_position(client, db_url):
    await scored_videos(client, db_url, 2)

    async def caught_up() -> dict | None:
        body = (await client.get("/api/sync/full")).json()
        last_seq = await pg.fetchval(db_url, "SELECT last_seq FROM sync_meta")
        return body if body["cursor"] == last_seq else None

    body = await eventually(caught_up, what="full blob at the log's position")

    synced = await pg.fetch(
        db_url,
        "SELECT video_id, score FROM videos WHERE score > 0 AND NOT hidden AND NOT shadow_hidden",
    )
    assert {v["videoId"]: v["score"] for v in body["videos"]} == {
        r["video_id"]: round(r["score"], 1) for r in synced
    }
    assert body["epoch"] == await pg.fetchval(db_url, "SELECT epoch FROM sync_meta")
    assert body["generatedAt"].endswith("Z")
    assert isinstance(body["channels"], list)


async def test_full_sync_revalidated_with_its_etag_is_304(client, db_url):
    [video] = await scored_videos(client, db_url, 1)
    etag = (await full_sync_with(client, video)).headers["etag"]

    async def revalidated() -> httpx.Response | None:
        # The module's earlier tests may still move the log (a late rescore): the blob, and
        # its ETag, then change between two requests. A body must come with a new ETag; the
        # revalidation goes on with that one until the blob holds still.
        nonlocal etag
        r = await client.get("/api/sync/full", headers={"If-None-Match": etag})
        if r.status_code == 200:
            assert r.headers["etag"] != etag, "a body for the ETag the client already holds"
            etag = r.headers["etag"]
            return None
        return r

    r = await eventually(revalidated, timeout=30, what="a 304 for the current ETag")

    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == etag


async def test_full_sync_with_a_stale_etag_sends_the_body(client, db_url):
    [video] = await scored_videos(client, db_url, 1)
    old = (await full_sync_with(client, video)).headers["etag"]
    [newer] = await scored_videos(client, db_url, 1)
    await full_sync_with(client, newer)

    r = await client.get("/api/sync/full", headers={"If-None-Match": old})

    assert r.status_code == 200
    assert r.headers["etag"] != old


async def test_full_sync_in_msgpack_decodes_to_the_json_document(client, db_url):
    [video] = await scored_videos(client, db_url, 1)
    await full_sync_with(client, video)

    as_json = await client.get("/api/sync/full")
    as_msgpack = await client.get("/api/sync/full", headers=MSGPACK)

    assert as_msgpack.headers["content-type"].startswith("application/msgpack")
    assert as_msgpack.headers["etag"] != as_json.headers["etag"]
    assert msgpack.unpackb(as_msgpack.content) == as_json.json()
