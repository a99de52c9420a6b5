"""Request bodies and query strings, validated by pydantic (strict: no silent coercion)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from realtube_push.domain.categories import Category
from realtube_push.domain.ids import CHANNEL_ID_PATTERN, USER_ID_PATTERN, VIDEO_ID_PATTERN

FUTURE_TOLERANCE = timedelta(minutes=5)
EARLIEST_CAST = datetime(2005, 1, 1, tzinfo=UTC)  # before YouTube, nothing was cast

VideoId = Annotated[str, StringConstraints(pattern=VIDEO_ID_PATTERN)]
ChannelId = Annotated[str, StringConstraints(pattern=CHANNEL_ID_PATTERN)]
UserId = Annotated[str, StringConstraints(pattern=USER_ID_PATTERN)]

# What PostgreSQL cannot hold in a text column: NUL, and unpaired surrogates (not UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: str) -> str:
    """``value`` unchanged, or a validation error (400 ``INVALID_FIELD``) when it holds a NUL
    character or an unpaired surrogate: free text is refused whole, never cleaned."""
    if _UNSTORABLE.search(value):
        raise PydanticCustomError(
            "unstorable_text", "text must not contain NUL characters or unpaired surrogates"
        )
    return value


def _user_agent(value: object) -> object:
    if isinstance(value, str):
        return storable(value).strip()[:128] or None
    return value


def _cast_time(value: object) -> object:
    """Accept RFC 3339 strings and epoch milliseconds (what ``Date.now()`` gives)."""
    if isinstance(value, bool):
        raise ValueError("timestamp must be an RFC 3339 string or epoch milliseconds")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError("timestamp is out of range") from exc
    if isinstance(value, str):
        if not (value.isascii() and value.isprintable()):  # the C parser stops at a NUL
            raise ValueError("timestamp must be RFC 3339")
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError("timestamp must be RFC 3339") from exc
        if parsed.tzinfo is None:
            raise ValueError("timestamp needs a time zone (use Z for UTC)")
        return parsed
    raise ValueError("timestamp must be an RFC 3339 string or epoch milliseconds")


class _Body(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, extra="forbid", strict=True, frozen=True, populate_by_name=False
    )


class VoteIn(_Body):
    """``POST /api/votes``."""

    video_id: VideoId
    category: Annotated[Category, Field(strict=False)]
    user_id: UserId
    user_agent: Annotated[
        str | None,
        BeforeValidator(_user_agent),
        Field(description="free text, trimmed and cut to 128 characters"),
    ] = None
    channel_id: ChannelId | None = None
    timestamp: Annotated[
        datetime | None,
        BeforeValidator(_cast_time),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string", "format": "date-time"},
                    {"type": "number", "description": "epoch milliseconds"},
                    {"type": "null"},
                ],
                "description": "when the vote was cast on the client: the latest cast wins",
            }
        ),
    ] = None

    def cast_at(self, now: datetime) -> datetime:
        """When the vote counts as cast: the client's time, clamped to now if in the future."""
        if self.timestamp is None or self.timestamp > now + FUTURE_TOLERANCE:
            return now
        if self.timestamp < EARLIEST_CAST:
            return EARLIEST_CAST
        return min(self.timestamp, now)


class VoteDeleteIn(_Body):
    """``DELETE /api/votes``."""

    video_id: VideoId
    user_id: UserId


class PrefixQuery(BaseModel):
    """``GET /api/videos/{prefix}`` filters."""

    model_config = ConfigDict(alias_generator=to_camel, extra="ignore")

    categories: str | None = None
    min_score: Annotated[float, Field(ge=0, le=100)] | None = None
