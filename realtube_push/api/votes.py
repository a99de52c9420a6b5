"""``POST /api/votes`` and ``DELETE /api/votes``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from quart import Blueprint, g
from quart_schema import validate_request

from realtube_push.api.limits import enforce_limit
from realtube_push.api.openapi import answers
from realtube_push.api.responses import SuccessOut, VoteOut
from realtube_push.api.schemas import VoteDeleteIn, VoteIn
from realtube_push.domain.ids import entity_hash
from realtube_push.ratelimit import Limit
from realtube_push.store import votes as vote_store
from realtube_push.store.votes import NewVote
from realtube_push.web.errors import ApiError
from realtube_push.web.request import client_ip, ip_hash, services

blueprint = Blueprint("votes", __name__)

# An IP may carry several users (NAT, households); its own ceiling is this many users' worth.
IP_VOTE_MULTIPLIER = 10


@blueprint.post("/api/votes")
@validate_request(VoteIn)
@answers(
    {200: VoteOut},
    {
        400: "`INVALID_FIELD`: a field missing, unknown or malformed (or the body is not a "
        "JSON object); `INVALID_CATEGORY`: not one of the five categories.",
        413: "`PAYLOAD_TOO_LARGE`: the body is over `MAX_BODY_BYTES`.",
    },
    rate_limited=True,
)
async def cast(data: VoteIn) -> tuple[dict[str, Any], int]:
    """Cast or change a vote; the latest cast time wins.

    A user has one vote per video: voting again changes its category. An older cast time
    than the user's current vote is acknowledged but not applied (``applied: false``).
    """
    g.video_id, g.user_id = data.video_id, data.user_id
    svc = services()
    limit = svc.settings.rate_limit_votes
    await enforce_limit("votes", data.user_id, Limit(limit))
    await enforce_limit("votes-ip", client_ip(), Limit(limit * IP_VOTE_MULTIPLIER))
    video_hash = entity_hash(data.video_id)
    vote = NewVote(
        video_id=data.video_id,
        video_hash=video_hash,
        user_id=data.user_id,
        category=data.category.value,
        cast_at=data.cast_at(datetime.now(UTC)),
        channel_id=data.channel_id,
        channel_hash=entity_hash(data.channel_id) if data.channel_id else None,
        ip_hash=ip_hash(),
        user_agent=data.user_agent,
    )
    outcome = await svc.votes.cast(vote)
    svc.metrics.votes.labels(str(outcome.applied).lower()).inc()
    if outcome.applied:
        # the vote is durable now: Redis trouble must not answer it with a 500 (the client
        # would retry a vote that already counts), and the publisher never raises for it
        await svc.publisher.after_commit(videos=[(data.video_id, video_hash)])
    return {
        "success": True,
        "newScore": round(outcome.video_score, 1),
        "userTrust": round(outcome.user_trust, 4),
        "applied": outcome.applied,
    }, 200


@blueprint.delete("/api/votes")
@validate_request(VoteDeleteIn)
@answers(
    {200: SuccessOut},
    {
        400: "`INVALID_FIELD`: a field missing, unknown or malformed.",
        404: "`NOT_FOUND`: this user has no vote on this video.",
        413: "`PAYLOAD_TOO_LARGE`: the body is over `MAX_BODY_BYTES`.",
    },
    rate_limited=True,
)
async def withdraw(data: VoteDeleteIn) -> tuple[dict[str, Any], int]:
    """Withdraw a vote; 404 when there is none (a second delete included)."""
    g.video_id, g.user_id = data.video_id, data.user_id
    svc = services()
    await enforce_limit("votes-delete", data.user_id, Limit(svc.settings.rate_limit_votes_delete))
    async with svc.pool.acquire() as conn:
        removed = await vote_store.withdraw_vote(conn, video_id=data.video_id, user_id=data.user_id)
    if not removed:
        raise ApiError(404, "NOT_FOUND", "No such vote")
    await svc.publisher.after_commit(videos=[(data.video_id, entity_hash(data.video_id))])
    return {"success": True}, 200
