"""GET /api/videos/{hashPrefix} and GET /api/videos?videoId= as the contract describes them."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support import ids, pg
from tests.support.api import prefix, vote
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")


async def scored_video(client, db_url, *, voters=1, category="fully_ai", **extra) -> str:
    """A fresh video with ``voters`` votes, once the score worker has recalculated it."""
    video = ids.video_id()
    for _ in range(voters):
        await vote(client, video, category=category, **extra)
    await eventually(lambda: pg.scored(db_url, [video]), what="video scored")
    return video


def video_ids(r: httpx.Response) -> list[str]:
    return [v["videoId"] for v in r.json()]


@pytest.mark.parametrize("length", [4, 5, 6, 7, 8])
async def test_prefix_lookup_lists_a_voted_video(client, db_url, length):
    video = await scored_video(client, db_url)

    r = await client.get(f"/api/videos/{prefix(video, length)}")

    assert r.status_code == 200
    assert video in video_ids(r)


async def test_prefix_lookup_is_case_insensitive(client, db_url):
    video = await scored_video(client, db_url)
    while not re.search("[a-f]", prefix(video)):  # an all-digit prefix has no case to change
        video = await scored_video(client, db_url)

    r = await client.get(f"/api/videos/{prefix(video).upper()}")

    assert r.status_code == 200
    assert video_ids(r) == [video]


async def test_prefix_lookup_gives_the_same_video_object_as_a_direct_lookup(client, db_url):
    video = await scored_video(client, db_url)

    [listed] = (await client.get(f"/api/videos/{prefix(video)}")).json()
    direct = (await client.get("/api/videos", params={"videoId": video})).json()

    assert listed == direct


async def test_categories_filter_keeps_only_videos_voted_in_those_categories(client, db_url):
    video = await scored_video(client, db_url, category="ai_voiceover")

    matching = await client.get(
        f"/api/videos/{prefix(video)}", params={"categories": "fully_ai,ai_voiceover"}
    )
    other = await client.get(f"/api/videos/{prefix(video)}", params={"categories": "ai_visuals"})

    assert video_ids(matching) == [video]
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "NOT_FOUND"


async def test_min_score_filter_drops_videos_scoring_below_it(client, db_url):
    video = await scored_video(client, db_url, voters=3)
    [listed] = (await client.get(f"/api/videos/{prefix(video)}")).json()
    score = listed["score"]
    assert score > 0

    at_score = await client.get(f"/api/videos/{prefix(video)}", params={"minScore": score})
    above = await client.get(f"/api/videos/{prefix(video)}", params={"minScore": score + 0.1})

    assert video_ids(at_score) == [video]
    assert above.status_code == 404


async def test_prefix_with_no_tracked_video_is_404_not_found(client):
    r = await client.get(f"/api/videos/{prefix(ids.video_id())}")

    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("bad", ["abc", "abcdef012", "ghij", "12_4", "abcd%20"])
async def test_malformed_prefix_is_400_invalid_prefix(client, bad):
    r = await client.get(f"/api/videos/{bad}")

    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_PREFIX"
    assert r.json()["error"]["message"]


@pytest.mark.parametrize("categories", ["deepfake", "fully_ai,nope", "FULLY_AI"])
async def test_unknown_category_filter_is_400_invalid_category(client, categories):
    r = await client.get("/api/videos/abcd", params={"categories": categories})

    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_CATEGORY"


@pytest.mark.parametrize("min_score", ["high", "", "-1", "100.5", "nan", "inf"])
async def test_bad_min_score_is_400_invalid_param(client, min_score):
    r = await client.get("/api/videos/abcd", params={"minScore": min_score})

    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_PARAM"


@pytest.mark.parametrize("column", ["hidden", "shadow_hidden"])
async def test_hidden_video_is_never_returned(client, db_url, column):
    video = await scored_video(client, db_url)
    await pg.execute(db_url, f"UPDATE videos SET {column} = true WHERE video_id = $1", video)

    by_prefix = await client.get(f"/api/videos/{prefix(video)}")
    by_id = await client.get("/api/videos", params={"videoId": video})

    assert by_prefix.status_code == 404
    assert by_id.status_code == 404


async def test_video_by_id_has_the_contract_fields(client, db_url):
    channel = ids.channel_id()
    video = await scored_video(client, db_url, category="ai_visuals", channelId=channel)

    r = await client.get("/api/videos", params={"videoId": video})

    assert r.status_code == 200
    body = r.json()
    assert set(body) == {
        "videoId", "score", "categories", "totalVotes", "locked", "channelId", "channelScore",
        "lastUpdated",
    }  # fmt: skip
    assert body["videoId"] == video
    assert body["channelId"] == channel
    assert body["totalVotes"] == 1
    assert body["categories"] == {"ai_visuals": {"votes": 1, "weightedScore": 100.0}}
    assert 0 < body["score"] <= 100
    assert body["locked"] is False
    assert isinstance(body["channelScore"], float)
    assert RFC3339_UTC.match(body["lastUpdated"])


async def test_video_by_id_shows_the_score_the_worker_computed(client, db_url):
    video = await scored_video(client, db_url, voters=2)

    r = await client.get("/api/videos", params={"videoId": video})

    stored = await pg.fetchval(db_url, "SELECT score FROM videos WHERE video_id = $1", video)
    assert stored > 0
    assert r.json()["score"] == round(stored, 1)
    assert r.json()["totalVotes"] == 2


@pytest.mark.parametrize(
    "params", [{}, {"videoId": ""}, {"videoId": "bad id!"}, {"videoId": "x" * 17}]
)
async def test_missing_or_invalid_video_id_is_400_invalid_field(client, params):
    r = await client.get("/api/videos", params=params)

    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_FIELD"


async def test_unknown_video_is_404(client):
    r = await client.get("/api/videos", params={"videoId": ids.video_id()})

    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"
