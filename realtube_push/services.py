"""The process's shared resources, opened together and closed together.

``open_services`` is the only place a pool or a Redis client is created; everything else
receives a ``Services`` and never builds its own connections (the score worker's LISTEN
connection is the one exception, since LISTEN needs a dedicated session). What runs on top
of them (the live hub, the routes, the workers) is composed in ``app.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
from redis.asyncio import Redis

from realtube_push.cache import Cache, Keys
from realtube_push.config import Settings
from realtube_push.fullblob import BlobCache
from realtube_push.observability import Metrics, RedisOutage, Status
from realtube_push.publisher import Publisher
from realtube_push.ratelimit import RateLimiter
from realtube_push.store import db
from realtube_push.vote_writer import VoteWriter


class ServiceUnavailable(RuntimeError):
    """A dependency (PostgreSQL or Redis) cannot be reached; the message says which and where."""


@dataclass
class Services:
    """Everything a request handler or a worker needs, created once per process."""

    settings: Settings
    database_url: str
    pool: asyncpg.Pool
    redis: Redis
    keys: Keys
    cache: Cache
    limiter: RateLimiter
    publisher: Publisher
    metrics: Metrics
    status: Status
    redis_outage: RedisOutage
    votes: VoteWriter
    full_blob: BlobCache


def redis_client(url: str) -> Redis:
    """A Redis client for ``url`` (``redis://``, ``rediss://`` or ``unix://``)."""
    return Redis.from_url(url, health_check_interval=30)


@contextlib.asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Connect to PostgreSQL and Redis (failing fast with a clear message), yield, close."""
    if not settings.database_url or not settings.redis_url:
        raise ServiceUnavailable("DATABASE_URL and REDIS_URL must be set (or use `dev`)")
    try:
        pool = await db.create_pool(
            settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise ServiceUnavailable(
            f"PostgreSQL unreachable at {_redact(settings.database_url)}: {exc}"
        ) from exc
    redis = redis_client(settings.redis_url)
    try:
        try:
            await redis.ping()
        except Exception as exc:
            raise ServiceUnavailable(
                f"Redis unreachable at {_redact(settings.redis_url)}: {exc}"
            ) from exc
        keys = Keys(settings.redis_namespace)
        metrics = Metrics(instance=settings.instance_id)
        outage = RedisOutage(metrics.redis_failures)
        cache = Cache(
            redis,
            keys,
            outage,
            video_ttl=settings.video_cache_ttl,
            channel_ttl=settings.channel_cache_ttl,
        )
        yield Services(
            settings=settings,
            database_url=settings.database_url,
            pool=pool,
            redis=redis,
            keys=keys,
            cache=cache,
            limiter=RateLimiter(redis, keys, outage, enabled=settings.rate_limits_enabled),
            publisher=Publisher(redis, keys, cache, outage),
            metrics=metrics,
            status=Status(),
            redis_outage=outage,
            votes=VoteWriter(pool, settings, metrics),
            full_blob=BlobCache(pool, metrics, check_seconds=settings.full_blob_check_seconds),
        )
    finally:
        await redis.aclose()
        await pool.close()


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url
