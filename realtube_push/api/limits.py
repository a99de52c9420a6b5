"""Per-request rate limits: count a request, refuse it past its limit."""

from __future__ import annotations

from quart import g

from realtube_push.ratelimit import Limit, Verdict
from realtube_push.web.errors import ApiError
from realtube_push.web.request import services


async def enforce_limit(endpoint: str, who: str, limit: Limit) -> None:
    """Count this request; raise 429 ``RATE_LIMITED`` past the limit.

    The strictest verdict of the request is kept for the X-RateLimit-* response headers.
    """
    verdict = await services().limiter.hit(endpoint, who, limit)
    current: Verdict | None = g.get("rate_verdict")
    if current is None or verdict.remaining < current.remaining or not verdict.allowed:
        g.rate_verdict = verdict
    if not verdict.allowed:
        raise ApiError(
            429,
            "RATE_LIMITED",
            f"Too many requests. Try again in {verdict.reset_after} seconds.",
            retry_after=verdict.reset_after,
            headers=verdict.headers(),
        )
