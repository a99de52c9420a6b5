r"""Identifier rules of the public API and the hashes the privacy-preserving lookups use.

Promises:

- The ``*_PATTERN`` strings are the API's identifier rules, written for pydantic's
  ``pattern=`` (a Rust regex, where ``$`` means end of text).
- The compiled ``*_RE`` and the ``is_*`` checks accept exactly the same strings. They end in
  ``\Z`` because Python's ``$`` also matches before a final newline: ``"abc\n"`` would
  otherwise pass as a video id.
- Hashes are lowercase hex SHA-256 of the UTF-8 id, so they compare the same way in Python
  and under PostgreSQL's "C" collation (plain byte order).
"""

import hashlib
import re
from typing import Final

VIDEO_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,16}$"
CHANNEL_ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,32}$"
USER_ID_PATTERN: Final = r"^[0-9a-f]{1,64}$"
HASH_PREFIX_PATTERN: Final = r"^[0-9a-fA-F]{4,8}$"
BUCKET_PATTERN: Final = r"^[0-9a-f]{1,4}$"


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.removesuffix("$") + r"\Z")


VIDEO_ID_RE: Final = _compile(VIDEO_ID_PATTERN)
CHANNEL_ID_RE: Final = _compile(CHANNEL_ID_PATTERN)
USER_ID_RE: Final = _compile(USER_ID_PATTERN)
HASH_PREFIX_RE: Final = _compile(HASH_PREFIX_PATTERN)
BUCKET_RE: Final = _compile(BUCKET_PATTERN)


def is_video_id(value: object) -> bool:
    """Return whether ``value`` is a str of 1-16 characters of ``A-Za-z0-9_-``."""
    return isinstance(value, str) and VIDEO_ID_RE.fullmatch(value) is not None


def is_channel_id(value: object) -> bool:
    """Return whether ``value`` is a str of 1-32 characters of ``A-Za-z0-9_-``."""
    return isinstance(value, str) and CHANNEL_ID_RE.fullmatch(value) is not None


def is_user_id(value: object) -> bool:
    """Return whether ``value`` is a str of 1-64 lowercase hex characters."""
    return isinstance(value, str) and USER_ID_RE.fullmatch(value) is not None


def entity_hash(entity_id: str) -> str:
    """Return the lowercase hex SHA-256 of ``entity_id`` (UTF-8); used for videos and channels."""
    return hashlib.sha256(entity_id.encode("utf-8")).hexdigest()


def parse_hash_prefix(value: str) -> str:
    """Return ``value`` lowercased if it is 4-8 hex characters, else raise ``ValueError``.

    Stored hashes are lowercase, so the prefix is normalised here once rather than compared
    case-insensitively on every row.
    """
    if HASH_PREFIX_RE.fullmatch(value) is None:
        raise ValueError(f"hash prefix must be 4 to 8 hexadecimal characters, got {value!r}")
    return value.lower()


def prefix_range(prefix: str) -> tuple[str, str]:
    """Return the bounds ``(lo, hi)`` of the hashes that start with ``prefix``.

    A lowercase hex hash ``h`` starts with ``prefix`` if and only if ``lo <= h < hi`` in
    byte ("C" collation) order.

    This turns a prefix lookup into ``WHERE hash >= lo AND hash < hi``, a range scan on a
    plain btree index, which ``LIKE 'prefix%'`` only gets with special operator classes.
    ``hi`` is ``prefix + "g"`` because "g" sorts after every hex digit, so every hash that
    continues the prefix lies below it, and every hash that differs earlier lies outside.
    Pass a lowercase prefix (as :func:`parse_hash_prefix` returns); an uppercase one
    matches no stored hash, just as ``startswith`` would not.

    >>> prefix_range("ab12")
    ('ab12', 'ab12g')
    """
    return prefix, prefix + "g"
