"""``/api/admin/*``: the dashboard's login, moderation actions and reads.

Access: ``POST /api/admin/login {"token": ADMIN_TOKEN}`` sets the session cookie ``rt_admin``
(HttpOnly, SameSite=Strict, Path=/, Secure when the request came over https). Every other
route here, and the admin live topic (``push/admin.py``), answers 401 ``UNAUTHORIZED`` in the
contract's error format without a valid one.

The cookie and its checks live in ``web/admin_session.py`` (shared with the live topic): it is
signed with a key derived from ``ADMIN_TOKEN`` and revoked in Redis on logout. The token
comparison here is constant-time.

Cross-site requests cannot act for an admin: the cookie is SameSite=Strict, state changes
need a JSON body (a form post cannot send one without a CORS preflight), and a request whose
``Origin`` names another host is refused.

The aggregate counters (``GET /api/admin/stats``) live with the admin live topic in
``push/admin.py``.

Moderation: ``POST /api/admin/{videos|channels|users}/{id}/{action}`` with ``{"reason"}``;
video actions ``lock``, ``unlock``, ``hide``, ``unhide``; channel ``lock``, ``unlock``; user
``shadowban``, ``unban``. Each is recorded in ``vip_actions`` (actor ``admin``) and effective at
once (see ``store/admin.py`` for what reaches clients and how).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import structlog
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints
from quart import Blueprint, Response, jsonify, request
from quart_schema import document_querystring, validate_request

from realtube_push.api.limits import enforce_limit
from realtube_push.api.openapi import answers, path_params
from realtube_push.api.queries import AuditQuery, AutoFlaggedQuery, TopQuery, query_args
from realtube_push.api.responses import (
    ActionOut,
    AuditOut,
    AutoFlaggedOut,
    LoginOut,
    SessionOut,
    SuccessOut,
    TopOut,
)
from realtube_push.api.schemas import storable
from realtube_push.domain.ids import (
    CHANNEL_ID_PATTERN,
    USER_ID_PATTERN,
    VIDEO_ID_PATTERN,
    is_channel_id,
    is_user_id,
    is_video_id,
)
from realtube_push.domain.views import iso
from realtube_push.ratelimit import Limit
from realtube_push.services import Services
from realtube_push.store import admin as admin_store
from realtube_push.store.admin import ActionOutcome, AuditEntry
from realtube_push.web.admin_session import (
    COOKIE,
    SESSION_SECONDS,
    new_session_cookie,
    require_admin,
)
from realtube_push.web.errors import ApiError
from realtube_push.web.origin import same_origin
from realtube_push.web.request import client_ip, ip_hash, services

blueprint = Blueprint("admin", __name__)
log = structlog.get_logger("realtube.admin")

LOGIN_ATTEMPTS_PER_MINUTE = 10
CROSS_ORIGIN = "`UNAUTHORIZED`: the request's `Origin` names another host."


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class LoginIn(_Body):
    """``POST /api/admin/login``."""

    token: Annotated[str, StringConstraints(min_length=1, max_length=512), AfterValidator(storable)]


class ReasonIn(_Body):
    """Every moderation action: why (kept in the audit log)."""

    reason: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
        AfterValidator(storable),
    ]


# -- sessions -------------------------------------------------------------------------------


def _https() -> bool:
    """Whether the browser talks https to us (directly, or to a trusted proxy in front)."""
    if request.scheme == "https":
        return True
    svc = services()
    if not svc.settings.proxy_networks:
        return False
    try:
        peer = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    trusted = any(peer in net for net in svc.settings.proxy_networks)
    return trusted and request.headers.get("X-Forwarded-Proto", "").lower() == "https"


@blueprint.before_request
async def _guard() -> None:
    """Every admin route but login needs the session; state changes need our own origin."""
    if request.method not in ("GET", "HEAD", "OPTIONS") and not same_origin(
        request.headers.get("Origin"), request.host
    ):
        raise ApiError(403, "UNAUTHORIZED", "Cross-origin admin requests are refused")
    if request.endpoint != "admin.login":
        await require_admin(services(), request.cookies.get(COOKIE))


@blueprint.after_request
async def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.post("/api/admin/login")
@validate_request(LoginIn)
@answers(
    {200: LoginOut},
    {
        400: "`INVALID_FIELD`: `token` missing, empty, over 512 characters or not text.",
        401: "`UNAUTHORIZED`: a wrong token, or `ADMIN_TOKEN` is not set.",
        403: CROSS_ORIGIN,
        413: "`PAYLOAD_TOO_LARGE`: the body is over `MAX_BODY_BYTES`.",
    },
    rate_limited=True,
)
async def login(data: LoginIn) -> Response:
    """Exchange the admin token for a session cookie."""
    svc = services()
    await enforce_limit("admin-login", client_ip(), Limit(LOGIN_ATTEMPTS_PER_MINUTE))
    token = svc.settings.admin_token
    if token is None or not token.get_secret_value():
        raise ApiError(401, "UNAUTHORIZED", "Admin access is disabled: ADMIN_TOKEN is not set")
    # compare digests: constant time whatever the lengths
    given = hashlib.sha256(data.token.encode()).digest()
    wanted = hashlib.sha256(token.get_secret_value().encode()).digest()
    if not hmac.compare_digest(given, wanted):
        log.warning("admin_login_failed", ip_hash=ip_hash())
        raise ApiError(401, "UNAUTHORIZED", "Wrong admin token")
    value, expires = new_session_cookie(svc, time.time())
    response = jsonify({"success": True, "expiresAt": iso(datetime.fromtimestamp(expires, UTC))})
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_https(),
    )
    log.info("admin_login", ip_hash=ip_hash())
    return response


@blueprint.post("/api/admin/logout")
@answers({200: SuccessOut}, {403: CROSS_ORIGIN}, admin=True)
async def logout() -> Response:
    """End the session: the cookie is cleared and its id refused until it would expire."""
    svc = services()
    sid, expires = await require_admin(svc, request.cookies.get(COOKIE))
    ttl = max(1, expires - int(time.time()))
    await svc.redis.set(svc.keys.admin_revoked(sid), b"1", ex=ttl)
    response = jsonify({"success": True})
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="Strict", secure=_https())
    return response


@blueprint.get("/api/admin/session")
@answers({200: SessionOut}, admin=True)
async def session() -> dict[str, Any]:
    """200 while logged in (the page shows the login form on 401)."""
    _, expires = await require_admin(services(), request.cookies.get(COOKIE))
    return {"authenticated": True, "expiresAt": iso(datetime.fromtimestamp(expires, UTC))}


# -- moderation -----------------------------------------------------------------------------

VIDEO_ACTIONS: dict[str, tuple[Literal["locked", "hidden"], bool]] = {
    "lock": ("locked", True),
    "unlock": ("locked", False),
    "hide": ("hidden", True),
    "unhide": ("hidden", False),
}
CHANNEL_ACTIONS = {"lock": True, "unlock": False}
USER_ACTIONS = {"shadowban": True, "unban": False}
ACTION_ERRORS = {
    400: "`INVALID_FIELD`: `reason` missing, empty or over 500 characters, or an invalid id.",
    403: CROSS_ORIGIN,
    404: "`NOT_FOUND`: an unknown action, or no such video, channel or user.",
    413: "`PAYLOAD_TOO_LARGE`: the body is over `MAX_BODY_BYTES`.",
}


def audit_object(entry: AuditEntry) -> dict[str, Any]:
    """An audit entry as the API shows it."""
    return {
        "id": entry.id,
        "actor": entry.actor,
        "action": entry.action,
        "targetType": entry.target_type,
        "targetId": entry.target_id,
        "reason": entry.reason,
        "createdAt": iso(entry.created_at),
    }


async def _done(svc: Services, outcome: ActionOutcome | None, what: str) -> dict[str, Any]:
    """Invalidate caches and publish what the action logged; the response body."""
    if outcome is None:
        raise ApiError(404, "NOT_FOUND", f"Unknown {what}")
    await svc.publisher.after_commit(
        outcome.batch, videos=outcome.videos, channels=outcome.channels
    )
    log.info(
        "admin_action",
        action=outcome.audit.action,
        target_type=outcome.audit.target_type,
        target_id=outcome.audit.target_id,
    )
    return {
        "success": True,
        "action": audit_object(outcome.audit),
        "requeuedVideos": len(outcome.videos),
    }


@blueprint.post("/api/admin/videos/<video_id>/<action>")
@validate_request(ReasonIn)
@path_params(
    video_id={"type": "string", "pattern": VIDEO_ID_PATTERN},
    action={"type": "string", "enum": list(VIDEO_ACTIONS)},
)
@answers({200: ActionOut}, ACTION_ERRORS, admin=True)
async def video_action(video_id: str, action: str, data: ReasonIn) -> dict[str, Any]:
    """Lock, unlock, hide or unhide a video."""
    if action not in VIDEO_ACTIONS:
        raise ApiError(404, "NOT_FOUND", f"Unknown video action {action!r}")
    if not is_video_id(video_id):
        raise ApiError(400, "INVALID_FIELD", "videoId must be 1-16 characters of A-Za-z0-9_-")
    flag, value = VIDEO_ACTIONS[action]
    svc = services()
    async with svc.pool.acquire() as conn:
        outcome = await admin_store.set_video_flag(
            conn,
            video_id,
            flag=flag,
            value=value,
            action=action,
            reason=data.reason,
        )
    return await _done(svc, outcome, f"video {video_id}")


@blueprint.post("/api/admin/channels/<channel_id>/<action>")
@validate_request(ReasonIn)
@path_params(
    channel_id={"type": "string", "pattern": CHANNEL_ID_PATTERN},
    action={"type": "string", "enum": list(CHANNEL_ACTIONS)},
)
@answers({200: ActionOut}, ACTION_ERRORS, admin=True)
async def channel_action(channel_id: str, action: str, data: ReasonIn) -> dict[str, Any]:
    """Lock or unlock a channel."""
    if action not in CHANNEL_ACTIONS:
        raise ApiError(404, "NOT_FOUND", f"Unknown channel action {action!r}")
    if not is_channel_id(channel_id):
        raise ApiError(400, "INVALID_FIELD", "channelId must be 1-32 characters of A-Za-z0-9_-")
    svc = services()
    async with svc.pool.acquire() as conn:
        outcome = await admin_store.set_channel_lock(
            conn, channel_id, locked=CHANNEL_ACTIONS[action], action=action, reason=data.reason
        )
    return await _done(svc, outcome, f"channel {channel_id}")


@blueprint.post("/api/admin/users/<user_id>/<action>")
@validate_request(ReasonIn)
@path_params(
    user_id={"type": "string", "pattern": USER_ID_PATTERN},
    action={"type": "string", "enum": list(USER_ACTIONS)},
)
@answers({200: ActionOut}, ACTION_ERRORS, admin=True)
async def user_action(user_id: str, action: str, data: ReasonIn) -> dict[str, Any]:
    """Shadowban or unban a user (their votes stay recorded; their weight drops to 0)."""
    if action not in USER_ACTIONS:
        raise ApiError(404, "NOT_FOUND", f"Unknown user action {action!r}")
    if not is_user_id(user_id):
        raise ApiError(400, "INVALID_FIELD", "userId must be 1-64 lowercase hex characters")
    svc = services()
    async with svc.pool.acquire() as conn:
        outcome = await admin_store.set_shadowban(
            conn, user_id, banned=USER_ACTIONS[action], action=action, reason=data.reason
        )
    return await _done(svc, outcome, f"user {user_id}")


# -- reads ----------------------------------------------------------------------------------

LIMIT_ERROR = "`INVALID_PARAM`: `limit` or `hours` not an integer in its range."


def _channel(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "channelId": row["channel_id"],
        "score": round(row["score"], 1),
        "totalVideos": row["total_videos"],
        "flaggedVideos": row["flagged_videos"],
        "topCategories": list(row["top_categories"]),
        "locked": row["locked"],
        "autoFlag": row["auto_flag_new"],
        "lastUpdated": iso(row["last_updated"]),
    }


@blueprint.get("/api/admin/audit")
@document_querystring(AuditQuery)
@answers({200: AuditOut}, {400: LIMIT_ERROR}, admin=True)
async def audit() -> dict[str, Any]:
    """Recent moderation actions, newest first (``?limit=``, default 50)."""
    limit = query_args(AuditQuery).limit
    entries = await admin_store.recent_actions(services().pool, limit=limit)
    return {"actions": [audit_object(e) for e in entries]}


@blueprint.get("/api/admin/top")
@document_querystring(TopQuery)
@answers({200: TopOut}, {400: LIMIT_ERROR}, admin=True)
async def top() -> dict[str, Any]:
    """The most flagged videos and channels (``?limit=``, default 10 each)."""
    limit = query_args(TopQuery).limit
    pool = services().pool
    videos = await admin_store.top_videos(pool, limit=limit)
    channels = await admin_store.top_channels(pool, limit=limit)
    return {
        "videos": [
            {
                "videoId": r["video_id"],
                "score": round(r["score"], 1),
                "totalVotes": r["total_votes"],
                "locked": r["locked"],
                "channelId": r["channel_id"],
                "lastUpdated": iso(r["last_updated"]),
            }
            for r in videos
        ],
        "channels": [_channel(r) for r in channels],
    }


@blueprint.get("/api/admin/auto-flagged")
@document_querystring(AutoFlaggedQuery)
@answers({200: AutoFlaggedOut}, {400: LIMIT_ERROR}, admin=True)
async def auto_flagged() -> dict[str, Any]:
    """Channels that newly auto-flag their videos (``?hours=`` window, default 24)."""
    query = query_args(AutoFlaggedQuery)
    hours, limit = query.hours, query.limit
    rows = await admin_store.auto_flagged_channels(services().pool, hours=hours, limit=limit)
    return {"channels": [_channel(r) for r in rows], "hours": hours}
