"""``GET /api/videos/{hashPrefix}`` and ``GET /api/videos?videoId=``."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, g
from quart_schema import document_querystring

from realtube_push.api.limits import enforce_limit
from realtube_push.api.openapi import answers, path_params
from realtube_push.api.queries import PrefixQuery, VideoQuery, query_args
from realtube_push.api.responses import VideoList, VideoOut
from realtube_push.domain.ids import HASH_PREFIX_PATTERN, parse_hash_prefix, prefix_range
from realtube_push.domain.views import video_object
from realtube_push.ratelimit import Limit
from realtube_push.store import videos as video_store
from realtube_push.store.videos import VideoRow
from realtube_push.web.errors import ApiError
from realtube_push.web.request import client_ip, services

blueprint = Blueprint("videos", __name__)


def _object(row: VideoRow) -> dict[str, Any]:
    return video_object(
        video_id=row.video_id,
        score=row.score,
        categories=row.categories,
        channel_id=row.channel_id,
        channel_score=row.channel_score,
        locked=row.locked,
        total_votes=row.total_votes,
        last_updated=row.last_updated,
    )


async def _limit() -> None:
    await enforce_limit("videos", client_ip(), Limit(services().settings.rate_limit_videos))


@blueprint.get("/api/videos/<prefix>")
@document_querystring(PrefixQuery)
@path_params(prefix={"type": "string", "pattern": HASH_PREFIX_PATTERN})
@answers(
    {200: VideoList},
    {
        400: "`INVALID_PREFIX`: not 4-8 hex characters; `INVALID_CATEGORY`: an unknown "
        "category in `categories`; `INVALID_PARAM`: `minScore` not a number from 0 to 100.",
        404: "`NOT_FOUND`: no tracked video matches the prefix (and the filters).",
    },
    rate_limited=True,
)
async def by_prefix(prefix: str) -> tuple[list[dict[str, Any]], int]:
    """Every tracked video whose SHA-256 hex starts with the prefix (the client filters).

    The privacy-preserving lookup: send a 4-8 character prefix of SHA-256(videoId) in hex and
    pick the wanted video from the answer, so the server never learns which one it was.
    Hidden videos are never listed.
    """
    await _limit()
    try:
        normalized = parse_hash_prefix(prefix)
    except ValueError as exc:
        raise ApiError(400, "INVALID_PREFIX", str(exc)) from exc
    query = query_args(PrefixQuery)
    categories, min_score = query.categories, query.min_score
    svc = services()

    async def load() -> list[dict[str, Any]]:
        lo, hi = prefix_range(normalized)
        return [_object(r) for r in await video_store.by_hash_range(svc.pool, lo, hi)]

    # the unfiltered list is cached; filters apply per request
    found, hit = await svc.cache.read_through(
        svc.keys.prefix(normalized), svc.cache.video_ttl, load
    )
    svc.metrics.cache.labels("hit" if hit else "miss").inc()
    items = found or []
    if categories:
        items = [v for v in items if categories.intersection(v["categories"])]
    if min_score is not None:
        items = [v for v in items if v["score"] >= min_score]
    if not items:
        raise ApiError(404, "NOT_FOUND", "No tracked videos match this prefix")
    return items, 200


@blueprint.get("/api/videos")
@document_querystring(VideoQuery)
@answers(
    {200: VideoOut},
    {
        400: "`INVALID_FIELD`: `videoId` missing or not 1-16 characters of `A-Za-z0-9_-`.",
        404: "`NOT_FOUND`: the video is not tracked (no votes, or hidden).",
    },
    rate_limited=True,
)
async def by_id() -> tuple[dict[str, Any], int]:
    """One video by id."""
    await _limit()
    video_id = query_args(VideoQuery).video_id
    g.video_id = video_id
    svc = services()

    async def load() -> dict[str, Any] | None:
        row = await video_store.by_id(svc.pool, video_id)
        return None if row is None else _object(row)

    obj, hit = await svc.cache.read_through(svc.keys.video(video_id), svc.cache.video_ttl, load)
    svc.metrics.cache.labels("hit" if hit else "miss").inc()
    if obj is None:
        raise ApiError(404, "NOT_FOUND", f"Video {video_id} is not tracked")
    return obj, 200
