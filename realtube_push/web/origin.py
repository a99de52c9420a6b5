"""Which ``Origin`` may talk to us: ``CORS_ORIGINS`` for the public routes, our own host for
the admin ones. Entries of ``CORS_ORIGINS`` ending in ``*`` are prefixes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit


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


def same_origin(origin: str | None, host: str | None) -> bool:
    """Whether a request's ``Origin`` (when sent) names the host it was sent to."""
    if not origin:
        return True
    return urlsplit(origin).netloc.lower() == (host or "").lower()
