"""What the API answers, as models for the OpenAPI document (docs/api.md says it in prose).

These models describe; they do not build answers (the handlers and ``domain/views.py`` do,
on the hot path, without a validation pass). The test suite checks a running server's
answers against the document these models produce, so a shape that drifts fails there.
Models whose body is not JSON subclass ``Media``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel
from pydantic.alias_generators import to_camel

from realtube_push.domain.categories import Category

ErrorCode = Literal[
    "INVALID_FIELD",
    "INVALID_CATEGORY",
    "INVALID_PREFIX",
    "MISSING_PARAM",
    "INVALID_PARAM",
    "NOT_FOUND",
    "RATE_LIMITED",
    "OVERLOADED",
    "PAYLOAD_TOO_LARGE",
    "UNAUTHORIZED",
    "INTERNAL_ERROR",
]
Score = Annotated[float, Field(ge=0, le=100)]
Trust = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=0)]


class Media:
    """Marks a response whose body is not JSON: ``MEDIA_TYPES`` lists the types it may be
    sent as (none: no body, e.g. a redirect)."""

    MEDIA_TYPES: ClassVar[tuple[str, ...]] = ()


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


# -- errors ---------------------------------------------------------------------------------


class ErrorDetail(_Out):
    """What went wrong: a contract code, a message for people, and for ``RATE_LIMITED`` and
    ``OVERLOADED`` the seconds to wait."""

    code: ErrorCode
    message: str
    retry_after: Count | None = None


class ErrorOut(_Out):
    """The one error shape of every route."""

    error: ErrorDetail


# -- videos, channels, users, stats ---------------------------------------------------------


class CategoryTally(_Out):
    """A category's votes and its trust-weighted share (0-100)."""

    votes: Count
    weighted_score: Score


class VideoOut(_Out):
    """A tracked video and its score."""

    video_id: str
    score: Score
    categories: dict[Category, CategoryTally]
    total_votes: Count
    locked: bool
    channel_id: str | None
    channel_score: Score | None
    last_updated: datetime


class VideoList(RootModel[list[VideoOut]]):
    """The tracked videos whose hash starts with the prefix (after the filters)."""


class ChannelOut(_Out):
    """A channel's score, aggregated from its videos."""

    channel_id: str
    score: Score
    total_videos: Count
    flagged_videos: Count
    top_categories: list[Category]
    locked: bool
    auto_flag: bool
    last_updated: datetime


class UserOut(_Out):
    """A user's trust profile (created with the defaults on first lookup)."""

    user_id: str
    trust_score: Trust
    total_votes: Count
    accuracy_rate: Trust
    account_age: Annotated[Count, Field(description="days since the user was first seen")]
    is_vip: bool


class StatsOut(_Out):
    """Totals over the whole dataset."""

    total_videos: Count
    total_channels: Count
    total_votes: Count
    total_users: Count
    active_users24h: Count = Field(alias="activeUsers24h")
    top_categories: dict[Category, Count]


# -- votes ----------------------------------------------------------------------------------


class VoteOut(_Out):
    """The vote is recorded; ``applied`` says whether it is now the user's vote on the video
    (an older cast time than the user's current vote is acknowledged, not applied)."""

    success: Literal[True]
    new_score: Score
    user_trust: Trust
    applied: bool


class SuccessOut(_Out):
    """Done."""

    success: Literal[True]


# -- sync -----------------------------------------------------------------------------------


class VideoDelta(_Out):
    """A video entering, changing in or leaving (``remove``) the synced dataset."""

    seq: Annotated[int, Field(ge=1)] | None = None
    video_id: str
    score: Score
    categories: dict[Category, CategoryTally]
    channel_id: str | None
    locked: bool
    total_votes: Count
    last_updated: datetime
    action: Literal["update", "remove"]


class ChannelDelta(ChannelOut):
    """A channel entering, changing in or leaving (``remove``) the synced dataset."""

    seq: Annotated[int, Field(ge=1)] | None = None
    action: Literal["update", "remove"]


class SyncDeltaOut(_Out):
    """Changes after the cursor (or since the time), latest per video and per channel."""

    MEDIA_TYPES: ClassVar[tuple[str, ...]] = ("application/json", "application/msgpack")

    videos: list[VideoDelta]
    channels: list[ChannelDelta]
    cursor: Count
    epoch: str
    sync_timestamp: datetime
    has_more: bool | None = None
    resync: bool | None = None


class SyncFullOut(_Out):
    """The whole synced dataset and the sync-log position it corresponds to."""

    MEDIA_TYPES: ClassVar[tuple[str, ...]] = ("application/json", "application/msgpack")

    videos: list[VideoDelta]
    channels: list[ChannelOut]
    generated_at: datetime
    cursor: Count
    epoch: str


class NotModified(Media):
    """Not modified: the ``If-None-Match`` ETag is the current one."""


# -- health ---------------------------------------------------------------------------------


class LiveOut(BaseModel):
    """The process is up."""

    status: Literal["ok"]


class DependencyCheck(BaseModel):
    """A dependency's round trip."""

    status: Literal["up", "down"]
    latency_ms: float | None = None
    error: str | None = None
    # Redis only, while it is down: what the instance does without it
    impact: str | None = None


class ScoreWorkerCheck(BaseModel):
    """The score worker: its last run, or ``external`` when this process runs no workers."""

    status: Literal["running", "starting", "external"]
    last_run: datetime | None = None


class LiveChannelCheck(BaseModel):
    """This instance's live channel."""

    status: Literal["accepting", "draining"]
    connections: dict[str, Count]
    epoch: str
    seq: Count
    deltas_published: Count
    deltas_delivered: Count
    deltas_conflated: Count
    frames_sent: Count
    backfills: Count


class ReadyChecks(BaseModel):
    """Each check of the readiness answer."""

    database: DependencyCheck
    redis: DependencyCheck
    score_worker: ScoreWorkerCheck
    live: LiveChannelCheck


class ReadyOut(BaseModel):
    """Readiness of this instance: ``healthy`` or ``degraded`` (200, Redis down: served from
    PostgreSQL), ``unhealthy`` (503, PostgreSQL down) or ``draining`` (503, shutting down)."""

    status: Literal["healthy", "degraded", "unhealthy", "draining"]
    checks: ReadyChecks
    uptime_seconds: float
    version: str
    instance: str


class MetricsText(Media):
    """Prometheus text exposition format."""

    MEDIA_TYPES = ("text/plain",)


# -- files and pages ------------------------------------------------------------------------


class ExportFile(Media):
    """The export file (``Content-Disposition: attachment``): a pg_dump archive or a zip of
    CSV files."""

    MEDIA_TYPES = ("application/octet-stream", "application/zip")


class EventStream(Media):
    """A Server-Sent Events stream (docs/protocol.md)."""

    MEDIA_TYPES = ("text/event-stream",)


class Page(Media):
    """An HTML page."""

    MEDIA_TYPES = ("text/html",)


class StaticFile(Media):
    """The file, with the MIME type of its name."""

    MEDIA_TYPES = ("*/*",)


class Redirect(Media):
    """A permanent redirect; ``Location`` says where."""


# -- admin ----------------------------------------------------------------------------------


class LoginOut(_Out):
    """Logged in: the session cookie ``rt_admin`` is set until ``expiresAt``."""

    success: Literal[True]
    expires_at: datetime


class SessionOut(_Out):
    """The admin session is valid until ``expiresAt``."""

    authenticated: Literal[True]
    expires_at: datetime


class AuditEntry(_Out):
    """One moderation action, as the audit log records it."""

    id: Annotated[int, Field(ge=1)]
    actor: str
    action: str
    target_type: Literal["video", "channel", "user"]
    target_id: str
    reason: str
    created_at: datetime


class ActionOut(_Out):
    """The action is recorded and in effect; ``requeuedVideos`` were queued for re-scoring."""

    success: Literal[True]
    action: AuditEntry
    requeued_videos: Count


class AuditOut(_Out):
    """Recent moderation actions, newest first."""

    actions: list[AuditEntry]


class TopVideo(_Out):
    """A highly scored visible video."""

    video_id: str
    score: Score
    total_votes: Count
    locked: bool
    channel_id: str | None
    last_updated: datetime


class TopOut(_Out):
    """The highest-scoring videos and channels."""

    videos: list[TopVideo]
    channels: list[ChannelOut]


class AutoFlaggedOut(_Out):
    """Channels that auto-flag their new videos and changed within ``hours``."""

    channels: list[ChannelOut]
    hours: Annotated[int, Field(ge=1)]


class InstanceStats(_Out):
    """One instance's counters (cumulative since it started)."""

    instance: str
    uptime: float
    connections: dict[str, Count]
    db_pool: dict[str, Count]
    votes: float
    deltas_delivered: float


class FanoutLag(_Out):
    """Live fan-out lag percentiles over the window (null without samples)."""

    p50_ms: float | None = Field(alias="p50Ms")
    p99_ms: float | None = Field(alias="p99Ms")
    samples: Count
    window_seconds: float


class ScoreWorkerStats(_Out):
    """The score queue, as the instances measure it (null when none could)."""

    queue_depth: Count | None
    lag_seconds: float | None


class AdminStatsOut(_Out):
    """Every instance's counters and their aggregate (what the admin live topic sends)."""

    t: Literal["stats"]
    at: float
    instances: list[InstanceStats]
    connections: dict[str, Count]
    deltas_published: float
    deltas_delivered: float
    votes: float
    cache_hits: float
    cache_misses: float
    fanout_lag: FanoutLag
    db_pool: dict[str, Count]
    score_worker: ScoreWorkerStats
