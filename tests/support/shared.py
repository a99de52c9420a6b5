"""Databases and servers from sync code, whatever runs in the test thread.

``fresh_database`` backs every test's ``database_url``; ``module_servers`` the ``server`` that a
whole test module shares (most contract tests need nothing of their own but fresh ids, so a
module pays for one server start instead of one per test). ``run_async`` runs a coroutine from
sync code (the sync browser tests' SQL checks).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio
import asyncpg

from tests.support.databases import Stack, database_url_for
from tests.support.servers import ServerFactory

T = TypeVar("T")


def run_async(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``anyio.run(fn, *args)`` in a worker thread: callable from sync fixtures whatever the
    test thread hosts (Playwright's sync API keeps an event loop running there)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(anyio.run, fn, *args).result()


async def _admin(admin_url: str, statement: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_database(stack: Stack, template: str, *, prefix: str = "rt_m") -> Iterator[str]:
    """A fresh migrated database (copied from ``template``), dropped on exit."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = stack.admin_database_url
    run_async(_admin, admin, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield database_url_for(admin, name)
    finally:
        run_async(_admin, admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def module_servers(stack: Stack, template: str) -> Iterator[ServerFactory]:
    """A server factory on a database of the module's own; stops its servers on exit."""
    with fresh_database(stack, template) as url:
        factory = ServerFactory(database_url=url, redis_url=stack.redis_url)
        try:
            yield factory
        finally:
            factory.stop_all()
