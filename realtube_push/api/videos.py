"""``GET /api/videos/{hashPrefix}`` and ``GET /api/videos?videoId=``."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, g, request

from realtube_push.api.limits import enforce_limit
from realtube_push.domain.categories import parse_categories
from realtube_push.domain.ids import is_video_id, parse_hash_prefix, prefix_range
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


def _filters() -> tuple[frozenset[str], float | None]:
    categories: frozenset[str] = frozenset()
    raw_categories = request.args.get("categories")
    if raw_categories is not None:
        try:
            categories = parse_categories(raw_categories)
        except ValueError as exc:
            raise ApiError(400, "INVALID_CATEGORY", str(exc)) from exc
    min_score: float | None = None
    raw_min = request.args.get("minScore")
    if raw_min is not None:
        try:
            min_score = float(raw_min)
        except ValueError:
            min_score = -1.0
        if not 0 <= min_score <= 100:
            raise ApiError(400, "INVALID_PARAM", "minScore must be a number from 0 to 100")
    return categories, min_score


async def _limit() -> None:
    await enforce_limit("videos", client_ip(), Limit(services().settings.rate_limit_videos))


@blueprint.get("/api/videos/<prefix>")
async def by_prefix(prefix: str) -> tuple[list[dict[str, Any]], int]:
    """Every tracked video whose SHA-256 hex starts with the prefix (the client filters)."""
    await _limit()
    try:
        normalized = parse_hash_prefix(prefix)
    except ValueError as exc:
        raise ApiError(400, "INVALID_PREFIX", str(exc)) from exc
    categories, min_score = _filters()
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
async def by_id() -> tuple[dict[str, Any], int]:
    """One video by id."""
    await _limit()
    video_id = request.args.get("videoId")
    if video_id is None:
        raise ApiError(400, "INVALID_FIELD", "Missing query parameter 'videoId'")
    if not is_video_id(video_id):
        raise ApiError(400, "INVALID_FIELD", "videoId must be 1-16 characters of A-Za-z0-9_-")
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
