"""Database URL helpers for the test fixtures."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class Stack:
    """Where the session's PostgreSQL (admin connection) and Redis are."""

    admin_database_url: str
    redis_url: str


def database_url_for(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead (keeps host, socket dir and credentials)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
