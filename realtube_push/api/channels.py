"""``GET /api/channels/{channelId}``."""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from realtube_push.api.limits import enforce_limit
from realtube_push.api.openapi import answers, path_params
from realtube_push.api.responses import ChannelOut
from realtube_push.domain.ids import CHANNEL_ID_PATTERN, is_channel_id
from realtube_push.domain.views import channel_object_from_row
from realtube_push.ratelimit import Limit
from realtube_push.store import channels as channel_store
from realtube_push.web.errors import ApiError
from realtube_push.web.request import client_ip, services

blueprint = Blueprint("channels", __name__)


@blueprint.get("/api/channels/<channel_id>")
@path_params(channel_id={"type": "string", "pattern": CHANNEL_ID_PATTERN})
@answers(
    {200: ChannelOut},
    {
        400: "`INVALID_FIELD`: not 1-32 characters of `A-Za-z0-9_-`.",
        404: "`NOT_FOUND`: the channel is not tracked.",
    },
    rate_limited=True,
)
async def get_channel(channel_id: str) -> tuple[dict[str, Any], int]:
    """A channel's aggregated score."""
    svc = services()
    await enforce_limit("videos", client_ip(), Limit(svc.settings.rate_limit_videos))
    if not is_channel_id(channel_id):
        raise ApiError(400, "INVALID_FIELD", "channelId must be 1-32 characters of A-Za-z0-9_-")

    async def load() -> dict[str, Any] | None:
        row = await channel_store.get_channel(svc.pool, channel_id)
        if row is None:
            return None
        return channel_object_from_row(row)

    obj, hit = await svc.cache.read_through(
        svc.keys.channel(channel_id), svc.cache.channel_ttl, load
    )
    svc.metrics.cache.labels("hit" if hit else "miss").inc()
    if obj is None:
        raise ApiError(404, "NOT_FOUND", f"Channel {channel_id} is not tracked")
    return obj, 200
