"""Fresh identifiers for tests, valid per the contract."""

from __future__ import annotations

import secrets


def video_id() -> str:
    """An 11-character YouTube-like id."""
    return secrets.token_urlsafe(8)[:11]


def user_id() -> str:
    """A 64-hex-char user id like the extension's."""
    return secrets.token_hex(32)


def channel_id() -> str:
    return "UC" + secrets.token_urlsafe(16)[:22]
