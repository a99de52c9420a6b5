"""Query strings (and the headers some routes read): one model per route, both its OpenAPI
description and its validation.

A handler reads its query with ``query_args(Model)`` at the point where the contract checks
it (after the rate limit, after the path), and declares the same model with quart-schema's
``document_querystring``. Each rule refuses with the contract's code for that parameter
(``INVALID_PARAM``, ``INVALID_CATEGORY``, ``INVALID_FIELD`` for identifiers, ``MISSING_PARAM``),
raised as a pydantic error whose type is the code; ``errors.py`` turns it into the answer.
A repeated key counts with its first value, unknown keys are ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Final, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from quart import request

from realtube_push.domain.categories import CATEGORIES, parse_categories
from realtube_push.domain.ids import VIDEO_ID_PATTERN, is_video_id
from realtube_push.web.errors import QueryValidationError, refuse

Q = TypeVar("Q", bound=BaseModel)

SINCE_FUTURE_TOLERANCE: Final = timedelta(minutes=1)
DIGITS_MAX: Final = 18  # a sequence number or count beyond this is no number we ever issued


def query_args(model: type[Q]) -> Q:
    """The request's query string as ``model``, or ``QueryValidationError``."""
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise QueryValidationError(exc) from exc


def _digits(name: str, value: object, low: int = 0, high: int | None = None) -> int:
    """A non-negative integer written in ASCII digits only (no sign, space or underscore)."""
    if (
        not isinstance(value, str)
        or not value.isascii()
        or not value.isdigit()
        or len(value) > DIGITS_MAX
        or int(value) < low
        or (high is not None and int(value) > high)
    ):
        limits = (
            f"an integer from {low} to {high}" if high is not None else "a non-negative integer"
        )
        raise refuse("INVALID_PARAM", f"{name} must be {limits}")
    return int(value)


def _bounded(name: str, low: int, high: int) -> tuple[BeforeValidator, WithJsonSchema]:
    """The validator and schema of an integer query parameter from ``low`` to ``high``."""
    return (
        BeforeValidator(partial(_digits, name, low=low, high=high)),
        WithJsonSchema({"type": "integer", "minimum": low, "maximum": high}),
    )


class _Query(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, extra="ignore", frozen=True)


# -- videos ---------------------------------------------------------------------------------


def _categories(value: object) -> frozenset[str]:
    try:
        return parse_categories(str(value))
    except ValueError as exc:
        raise refuse("INVALID_CATEGORY", str(exc)) from exc


def _min_score(value: object) -> float:
    try:
        score = float(str(value))
    except ValueError:
        score = -1.0
    if not 0 <= score <= 100:  # NaN fails this too
        raise refuse("INVALID_PARAM", "minScore must be a number from 0 to 100")
    return score


class PrefixQuery(_Query):
    """Filters of ``GET /api/videos/{prefix}``."""

    categories: Annotated[
        frozenset[str] | None,
        BeforeValidator(_categories),
        WithJsonSchema(
            {
                "type": "string",
                "description": "comma list of categories: keep videos with a vote in any of "
                f"them ({', '.join(CATEGORIES)})",
            }
        ),
    ] = None
    min_score: Annotated[
        float | None,
        BeforeValidator(_min_score),
        WithJsonSchema(
            {
                "type": "number",
                "minimum": 0,
                "maximum": 100,
                "description": "keep videos scoring at least this",
            }
        ),
    ] = None


def _video_id(value: object) -> str:
    if not is_video_id(value):
        raise refuse("INVALID_FIELD", "videoId must be 1-16 characters of A-Za-z0-9_-")
    return str(value)


class VideoQuery(_Query):
    """``GET /api/videos?videoId=``."""

    video_id: Annotated[
        str,
        BeforeValidator(_video_id),
        WithJsonSchema({"type": "string", "pattern": VIDEO_ID_PATTERN}),
    ]


# -- sync -----------------------------------------------------------------------------------


def _since(value: object) -> datetime:
    raw = str(value)
    try:
        # the C parser stops at a NUL, so "...Z\x00junk" would pass: printable ASCII only
        if not (raw.isascii() and raw.isprintable()):
            raise ValueError(raw)
        # a "+" in a URL arrives as a space
        since = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError as exc:
        raise refuse("INVALID_PARAM", "since must be an RFC 3339 time") from exc
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    if since > datetime.now(UTC) + SINCE_FUTURE_TOLERANCE:
        raise refuse("INVALID_PARAM", "since is more than a minute in the future")
    return since


class SyncDeltaQuery(_Query):
    """``GET /api/sync/delta``: ``cursor`` (with ``epoch``) or ``since``; ``cursor`` wins when
    both are sent (each must still be valid)."""

    cursor: Annotated[
        int | None,
        BeforeValidator(partial(_digits, "cursor")),
        WithJsonSchema(
            {
                "type": "integer",
                "minimum": 0,
                "description": "the last seq applied: answer every change after it (gap-free)",
            }
        ),
    ] = None
    epoch: Annotated[
        str | None,
        WithJsonSchema({"type": "string", "description": "the epoch of the cursor"}),
    ] = None
    since: Annotated[
        datetime | None,
        BeforeValidator(_since),
        WithJsonSchema(
            {
                "type": "string",
                "format": "date-time",
                "description": "RFC 3339: the changes logged since then (without cursor)",
            }
        ),
    ] = None

    @model_validator(mode="after")
    def _one_of_them(self) -> SyncDeltaQuery:
        if self.cursor is None and self.since is None:
            raise refuse("MISSING_PARAM", "Query parameter 'since' (or 'cursor') is required")
        return self


class SyncHeaders(BaseModel):
    """Request headers ``/api/sync/*`` reads."""

    x_user_id: str | None = Field(
        None, description="the user's id: the per-user rate limit counts it (else the address)"
    )
    accept: str | None = Field(
        None, description="`application/msgpack` (preferred) answers MessagePack, else JSON"
    )


class FullSyncHeaders(SyncHeaders):
    """Request headers ``/api/sync/full`` reads."""

    if_none_match: str | None = Field(None, description="the ETag held: 304 when it is current")
    accept_encoding: str | None = Field(None, description="`gzip`: the body is sent gzipped")


# -- export and admin reads -----------------------------------------------------------------


def _format(value: object) -> str:
    if value not in ("dump", "csv"):
        raise refuse("INVALID_PARAM", "format must be 'dump' or 'csv'")
    return str(value)


class ExportQuery(_Query):
    """``GET /api/database/export``."""

    format: Annotated[
        str,
        BeforeValidator(_format),
        WithJsonSchema({"type": "string", "enum": ["dump", "csv"], "default": "dump"}),
    ] = "dump"


class AuditQuery(_Query):
    """``GET /api/admin/audit``."""

    limit: Annotated[int, *_bounded("limit", 1, 500)] = 50


class TopQuery(_Query):
    """``GET /api/admin/top``."""

    limit: Annotated[int, *_bounded("limit", 1, 100)] = 10


class AutoFlaggedQuery(_Query):
    """``GET /api/admin/auto-flagged``."""

    hours: Annotated[int, *_bounded("hours", 1, 24 * 30)] = 24
    limit: Annotated[int, *_bounded("limit", 1, 100)] = 20


# -- live (parsed by push/sse.py; described here) -------------------------------------------


class LiveSseQuery(_Query):
    """``GET /api/live/sse`` (docs/protocol.md): the cursor and the subscription."""

    epoch: Annotated[str | None, WithJsonSchema({"type": "string", "maxLength": 64})] = None
    seq: Annotated[
        int | None,
        WithJsonSchema(
            {
                "type": "integer",
                "minimum": 0,
                "description": "with epoch: the cursor (Last-Event-ID wins over it)",
            }
        ),
    ] = None
    buckets: Annotated[
        str | None,
        WithJsonSchema(
            {
                "type": "string",
                "description": "comma list of 1-256 buckets, each 1-4 lowercase hex characters",
            }
        ),
    ] = None
    channels: Annotated[
        str | None,
        WithJsonSchema({"type": "string", "enum": ["0", "1", "true", "false"], "default": "1"}),
    ] = None
