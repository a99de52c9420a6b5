"""Database URL helpers for the test fixtures."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg


@dataclass(frozen=True)
class Stack:
    """Where the session's PostgreSQL (admin connection) and Redis are."""

    admin_database_url: str
    redis_url: str


def database_url_for(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead (keeps host, socket dir and credentials)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@contextlib.asynccontextmanager
async def scratch_database(stack: Stack, *, prefix: str, template: str) -> AsyncIterator[str]:
    """A new database copied from ``template``, yielded as a URL, dropped on exit."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(stack.admin_database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await admin.close()
    try:
        yield database_url_for(stack.admin_database_url, name)
    finally:
        admin = await asyncpg.connect(stack.admin_database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
