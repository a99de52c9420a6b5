"""Fixtures: real PostgreSQL and Redis (embedded by default, or DATABASE_URL/REDIS_URL),
a fresh migrated database per test, and real server processes on real sockets."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from realtube_push.config import Settings
from realtube_push.services import Services, open_services
from realtube_push.store import db
from tests.support.databases import Stack, database_url_for, scratch_database
from tests.support.servers import ServerFactory


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """PostgreSQL + Redis for the whole session."""
    env_db, env_redis = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if env_db and env_redis:
        yield Stack(admin_database_url=env_db, redis_url=env_redis)
        return
    from realtube_push.devstack import embedded_stack

    with (
        tempfile.TemporaryDirectory(prefix="rt-test-") as tmp,
        embedded_stack(Path(tmp)) as embedded,
    ):
        yield Stack(admin_database_url=embedded.admin_database_url, redis_url=embedded.redis_url)


@pytest.fixture(scope="session")
def template_database(stack: Stack) -> str:
    """A migrated database that every test database is copied from."""
    import anyio

    name = f"rt_template_{os.getpid()}"

    async def build() -> None:
        admin = await asyncpg.connect(stack.admin_database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(database_url_for(stack.admin_database_url, name))
        try:
            await db.apply_migrations(conn)
        finally:
            await conn.close()

    anyio.run(build)
    return name


@pytest.fixture
async def database_url(stack: Stack, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database of this test's own."""
    async with scratch_database(stack, prefix="rt_t", template=template_database) as url:
        yield url


@pytest.fixture
def settings(stack: Stack, database_url: str) -> Settings:
    """Test settings: this test's database, its own Redis namespace, limits off."""
    return Settings(
        database_url=database_url,
        redis_url=stack.redis_url,
        redis_namespace=f"t{secrets.token_hex(4)}",
        environment="test",
        rate_limits_enabled=False,
        score_debounce_ms=0,
    )


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    """Connected services (pool, Redis, cache...) on this test's database."""
    async with open_services(settings) as svc:
        yield svc


@pytest.fixture
def servers(stack: Stack, database_url: str) -> Iterator[ServerFactory]:
    """Starts real ``realtube-push serve`` processes on this test's database; stops them after."""
    factory = ServerFactory(database_url=database_url, redis_url=stack.redis_url)
    try:
        yield factory
    finally:
        factory.stop_all()
