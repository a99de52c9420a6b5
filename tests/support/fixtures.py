"""The suite's shared fixtures (a pytest plugin, registered by ``tests/conftest.py``).

Real PostgreSQL and Redis (embedded by default, or DATABASE_URL/REDIS_URL), a fresh migrated
database per test, and real server processes on real sockets:

- ``servers``: a factory of servers on this test's own database (stopped after the test);
- ``server``: one server shared by the whole module, on a database of the module's own; its
  settings come from the module's ``server_env`` marker
  (``pytestmark = pytest.mark.server_env(ADMIN_TOKEN="t")``);
- ``client``: an ``httpx.AsyncClient`` on ``server``; ``db_url``: ``server``'s database;
- ``no_server_crashes``: fails a test whose servers logged an error
  (``pytestmark = pytest.mark.usefixtures("no_server_crashes")``).

A directory whose tests need something else overrides a fixture in its own conftest (the
browser and client tests start a server per test).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from realtube_push.config import Settings
from realtube_push.services import Services, open_services
from realtube_push.store import db
from tests.support.databases import Stack, database_url_for
from tests.support.live import server_errors
from tests.support.servers import Server, ServerFactory
from tests.support.shared import fresh_database, module_servers

SERVER_ENV_MARKER = "server_env"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{SERVER_ENV_MARKER}(**env): settings (environment variable names) of the ``server``"
        " fixture",
    )


def server_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The settings the closest ``server_env`` marker gives (for a module-scoped fixture,
    the module's ``pytestmark``; for a test, its own marker first)."""
    marker = request.node.get_closest_marker(SERVER_ENV_MARKER)
    return dict(marker.kwargs) if marker else {}


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
def database_url(stack: Stack, template_database: str) -> Iterator[str]:
    """A fresh, migrated database of this test's own.

    Created outside the test's event loop, so that sync tests (Playwright's sync API keeps a
    loop running in the test thread) and trio tests (asyncpg is asyncio-only) can have one.
    """
    with fresh_database(stack, template_database, prefix="rt_t") as url:
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


@pytest.fixture
def no_server_crashes(servers: ServerFactory) -> Iterator[None]:
    """After the test: no server it started logged an error (a crash in a handler or task)."""
    yield
    for started in servers.started:
        assert not server_errors(started.log()), started.log()


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, stack: Stack, template_database: str
) -> Iterator[Server]:
    """One server for the whole module (tests use fresh ids), on a database of the module's
    own, with the settings of the module's ``server_env`` marker."""
    with module_servers(stack, template_database) as factory:
        yield factory.start(**server_env(request))


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on ``server``."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        yield http


@pytest.fixture
def db_url(server: Server) -> str:
    """``server``'s database (the module's, not ``database_url``: that is the test's own)."""
    return server.env["DATABASE_URL"]
