"""CORS (via quart-cors) from ``CORS_ORIGINS`` (see ``web/origin.py`` for the entries)."""

from __future__ import annotations

from collections.abc import Iterable

from quart import Quart
from quart_cors import cors

from realtube_push.web.origin import origin_patterns

RATE_LIMIT_HEADERS = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Retry-After",
    "ETag",
)


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
