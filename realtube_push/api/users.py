"""``GET /api/users/{userId}`` (an unknown but valid id is created with defaults)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from quart import Blueprint

from realtube_push.api.limits import enforce_limit
from realtube_push.api.openapi import answers, path_params
from realtube_push.api.responses import UserOut
from realtube_push.domain.ids import USER_ID_PATTERN, is_user_id
from realtube_push.domain.trust import NEW_ACCOUNT_TRUST
from realtube_push.ratelimit import Limit
from realtube_push.store import users as user_store
from realtube_push.web.errors import ApiError
from realtube_push.web.request import client_ip, services

blueprint = Blueprint("users", __name__)


@blueprint.get("/api/users/<user_id>")
@path_params(user_id={"type": "string", "pattern": USER_ID_PATTERN})
@answers(
    {200: UserOut},
    {400: "`INVALID_FIELD`: not 1-64 lowercase hex characters."},
    rate_limited=True,
)
async def get_user(user_id: str) -> tuple[dict[str, Any], int]:
    """A user's trust profile; an unknown but valid id is created with the defaults."""
    svc = services()
    await enforce_limit("videos", client_ip(), Limit(svc.settings.rate_limit_videos))
    if not is_user_id(user_id):
        raise ApiError(400, "INVALID_FIELD", "userId must be 1-64 lowercase hex characters")
    async with svc.pool.acquire() as conn:
        row = await user_store.get_or_create_user(conn, user_id, NEW_ACCOUNT_TRUST)
    age = datetime.now(UTC) - row["first_seen"]
    return {
        "userId": row["user_id"],
        "trustScore": round(row["trust_score"], 4),
        "totalVotes": row["total_votes"],
        "accuracyRate": round(row["accuracy_rate"], 4),
        "accountAge": age.days,
        "isVip": row["is_vip"],
    }, 200
