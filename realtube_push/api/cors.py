"""CORS (via quart-cors) from ``CORS_ORIGINS``; entries ending in ``*`` are prefixes."""

from __future__ import annotations

import re
from collections.abc import Iterable

from quart import Quart
from quart_cors import cors

RATE_LIMIT_HEADERS = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Retry-After",
    "ETag",
)


def origin_patterns(entries: Iterable[str]) -> list[str | re.Pattern[str]]:
    """``CORS_ORIGINS`` entries as quart-cors origins: exact strings or prefix patterns."""
    patterns: list[str | re.Pattern[str]] = []
    for entry in entries:
        if entry == "*":
            patterns.append("*")
        elif entry.endswith("*"):
            patterns.append(re.compile(re.escape(entry[:-1]) + r".*\Z"))
        else:
            patterns.append(entry)
    return patterns


def origin_allowed(origin: str | None, entries: Iterable[str]) -> bool:
    """Whether a request's ``Origin`` is allowed (no Origin: not a browser, allowed)."""
    if not origin:
        return True
    for allowed in origin_patterns(entries):
        if allowed == "*" or allowed == origin:
            return True
        if isinstance(allowed, re.Pattern) and allowed.match(origin):
            return True
    return False


def install(app: Quart, entries: Iterable[str]) -> Quart:
    """Apply CORS to every HTTP route, exposing the rate-limit headers to the browser."""
    return cors(
        app,
        allow_origin=origin_patterns(entries),
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=["Content-Type", "X-User-ID", "If-None-Match", "Accept"],
        expose_headers=list(RATE_LIMIT_HEADERS),
        max_age=600,
        send_origin_wildcard=False,
    )
