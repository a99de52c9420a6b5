"""Admin sessions: the signed ``rt_admin`` cookie, checked by every admin route (REST and live).

The cookie is stateless and signed: ``v1.<sid>.<expires>.<hmac>`` where the HMAC-SHA256 key
is itself derived from ``ADMIN_TOKEN``, so changing the token logs every session out, and a
cookie cannot be forged or extended without the token. Logout records the session id in Redis
(``admin:revoked:{sid}``) until the session would have expired, so a copied cookie dies with
the logout too. Signature comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from redis.exceptions import RedisError

from realtube_push.services import Services
from realtube_push.web.errors import ApiError

COOKIE = "rt_admin"
SESSION_SECONDS = 12 * 3600
_KEY_LABEL = b"realtube-admin-session-v1"


def _key(svc: Services) -> bytes | None:
    """The session-signing key derived from ``ADMIN_TOKEN`` (None: admin access is off)."""
    token = svc.settings.admin_token
    if token is None or not token.get_secret_value():
        return None
    return hmac.new(token.get_secret_value().encode(), _KEY_LABEL, hashlib.sha256).digest()


def _sign(key: bytes, payload: str) -> str:
    return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


def new_session_cookie(svc: Services, now: float) -> tuple[str, int]:
    """A signed session value and its expiry (unix seconds). Admin access must be on."""
    key = _key(svc)
    assert key is not None
    expires = int(now) + SESSION_SECONDS
    payload = f"v1.{secrets.token_hex(16)}.{expires}"
    return f"{payload}.{_sign(key, payload)}", expires


def _parse_session(svc: Services, value: str | None, now: float) -> tuple[str, int] | None:
    """``(session id, expiry)`` of a valid, unexpired cookie value, else None."""
    key = _key(svc)
    if key is None or not value or len(value) > 256:
        return None
    parts = value.split(".")
    if len(parts) != 4 or parts[0] != "v1" or not parts[2].isdigit():
        return None
    payload = ".".join(parts[:3])
    if not hmac.compare_digest(_sign(key, payload), parts[3]):
        return None
    expires = int(parts[2])
    if expires <= now:
        return None
    return parts[1], expires


async def admin_session(svc: Services, cookie: str | None) -> tuple[str, int] | None:
    """The valid, not logged-out session of ``cookie`` (``(sid, expires)``), or None."""
    session = _parse_session(svc, cookie, time.time())
    if session is None:
        return None
    try:
        revoked = await svc.redis.exists(svc.keys.admin_revoked(session[0]))
    except RedisError as exc:
        # signature and expiry still hold; only a logout's revocation cannot be checked, and
        # admins need the dashboard most when something is down
        svc.redis_outage.failed("admin_session", exc)
        return session
    svc.redis_outage.succeeded()
    return None if revoked else session


async def require_admin(svc: Services, cookie: str | None) -> tuple[str, int]:
    """The admin session of this request, or 401 ``UNAUTHORIZED``."""
    session = await admin_session(svc, cookie)
    if session is None:
        raise ApiError(401, "UNAUTHORIZED", "Admin session required: log in with the admin token")
    return session
