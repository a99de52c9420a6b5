"""The public shapes of videos, channels and deltas (docs/api.md), built from plain values.

One builder per shape, used by the REST handlers, the sync log and the full blob alike, so
a video looks the same whichever way a client learns of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol


def iso(moment: datetime) -> str:
    """RFC 3339 UTC with a ``Z`` and whole seconds, as the contract writes times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def categories_object(tallies: Mapping[str, tuple[int, float]]) -> dict[str, dict[str, Any]]:
    """``{category: {votes, weightedScore}}`` for categories that still hold votes."""
    return {
        category: {"votes": votes, "weightedScore": round(weighted, 1)}
        for category, (votes, weighted) in sorted(tallies.items())
        if votes > 0
    }


def in_synced_dataset(score: float, *, hidden: bool) -> bool:
    """A video or channel is synced to clients while visible with a score above 0."""
    return score > 0 and not hidden


def video_delta(
    *,
    video_id: str,
    score: float,
    categories: Mapping[str, tuple[int, float]],
    channel_id: str | None,
    locked: bool,
    total_votes: int,
    last_updated: datetime,
    action: str,
) -> dict[str, Any]:
    """A video as the sync log, the live channel and ``/api/sync/*`` carry it."""
    return {
        "videoId": video_id,
        "score": round(score, 1),
        "categories": categories_object(categories),
        "channelId": channel_id,
        "locked": locked,
        "totalVotes": total_votes,
        "lastUpdated": iso(last_updated),
        "action": action,
    }


def video_object(
    *,
    video_id: str,
    score: float,
    categories: Mapping[str, tuple[int, float]],
    channel_id: str | None,
    channel_score: float | None,
    locked: bool,
    total_votes: int,
    last_updated: datetime,
) -> dict[str, Any]:
    """The REST video object of ``GET /api/videos``."""
    return {
        "videoId": video_id,
        "score": round(score, 1),
        "categories": categories_object(categories),
        "totalVotes": total_votes,
        "locked": locked,
        "channelId": channel_id,
        "channelScore": None if channel_score is None else round(channel_score, 1),
        "lastUpdated": iso(last_updated),
    }


def channel_object(
    *,
    channel_id: str,
    score: float,
    total_videos: int,
    flagged_videos: int,
    top_categories: Sequence[str],
    locked: bool,
    auto_flag: bool,
    last_updated: datetime,
) -> dict[str, Any]:
    """The REST channel object of ``GET /api/channels/{id}``."""
    return {
        "channelId": channel_id,
        "score": round(score, 1),
        "totalVideos": total_videos,
        "flaggedVideos": flagged_videos,
        "topCategories": list(top_categories),
        "locked": locked,
        "autoFlag": auto_flag,
        "lastUpdated": iso(last_updated),
    }


class Row(Protocol):
    """A row keyed by column name: any mapping, or a database record."""

    def __getitem__(self, column: str, /) -> Any: ...


def channel_object_from_row(row: Row) -> dict[str, Any]:
    """The REST channel object from a ``channels`` row (any mapping keyed by column name)."""
    return channel_object(
        channel_id=row["channel_id"],
        score=row["score"],
        total_videos=row["total_videos"],
        flagged_videos=row["flagged_videos"],
        top_categories=row["top_categories"],
        locked=row["locked"],
        auto_flag=row["auto_flag_new"],
        last_updated=row["last_updated"],
    )


def channel_delta(channel: Mapping[str, Any], *, action: str) -> dict[str, Any]:
    """A channel as deltas carry it: the REST object plus the action."""
    return {**channel, "action": action}
