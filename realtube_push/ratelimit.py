"""Fixed-window rate limits on Redis counters (``ratelimit:{who}:{endpoint}``).

One round trip per check: a Lua script increments the window's counter, sets its expiry on
first use and returns the count with the time left, so concurrent requests from several
instances share one exact count. A fixed window admits at most 2x the limit across a window
boundary; that is accepted because it is cheap, and nginx's leaky bucket sits in front.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from realtube_push.cache import Keys
from realtube_push.observability import RedisOutage

_INCR = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""


@dataclass(frozen=True, slots=True)
class Limit:
    """``requests`` per ``window`` seconds."""

    requests: int
    window: int = 60


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one check, with what the X-RateLimit-* headers report."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: int

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` headers (and ``Retry-After`` when refused)."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_after),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_after)
        return headers


class RateLimiter:
    """Checks and counts requests against per-endpoint limits."""

    def __init__(
        self, redis: Redis, keys: Keys, outage: RedisOutage, *, enabled: bool = True
    ) -> None:
        self._keys = keys
        self._outage = outage
        self._enabled = enabled
        self._script = redis.register_script(_INCR)

    async def hit(self, endpoint: str, who: str, limit: Limit) -> Verdict:
        """Count one request by ``who`` on ``endpoint``; refused past the limit."""
        if not self._enabled:
            return Verdict(True, limit.requests, limit.requests, limit.window)
        try:
            count, ttl = await self._script(
                keys=[self._keys.ratelimit(who, endpoint)], args=[limit.window]
            )
        except RedisError as exc:
            # Fail open: with Redis down the API keeps serving from PostgreSQL, and nginx's
            # own limits still stand in front of it.
            self._outage.failed("rate_limit", exc)
            return Verdict(True, limit.requests, limit.requests, limit.window)
        self._outage.succeeded()
        count, ttl = int(count), max(int(ttl), 1)
        return Verdict(
            allowed=count <= limit.requests,
            limit=limit.requests,
            remaining=max(limit.requests - count, 0),
            reset_after=ttl,
        )
