"""Moderation writes and the dashboard's reads: every admin action in one transaction.

Promises:
- an action changes its row, records itself in ``vip_actions`` and queues the recalculation it
  needs, all in one transaction: either the whole action happened (and is audited) or none
  of it did;
- a video action (lock/unlock, hide/unhide) and a shadowban re-queue the affected videos in
  ``score_queue``; the score worker then logs their deltas, so clients see the change through
  the live channel like any other score change (a locked video keeps its score and says
  ``locked: true``; a hidden one leaves the synced dataset with a ``remove`` delta);
- a channel lock/unlock logs the channel's delta itself (last statement, the sync-log lock is
  held to commit): the channel worker logs only aggregate changes, and a lock alone changes
  none. Locking also clears ``auto_flag_new`` at once (a locked channel never auto-flags);
  the channel is queued so the worker recomputes the rest.

Example: ``lock_video(conn, "dQw4w9WgXcQ", locked=True, ...)`` sets ``videos.locked``, adds
``(admin, lock, video, dQw4w9WgXcQ, reason)`` to ``vip_actions`` and queues the video; ~100 ms
later the score worker logs ``{"videoId": "dQw4w9WgXcQ", "score": <unchanged>, "locked": true,
"action": "update"}`` and every live client applies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from realtube_push.domain.ids import entity_hash
from realtube_push.domain.views import channel_delta, channel_object_from_row
from realtube_push.store import channels as channel_store
from realtube_push.store import scores as score_store
from realtube_push.store import synclog
from realtube_push.store import users as user_store
from realtube_push.store.db import Connection, Executor, transaction
from realtube_push.store.synclog import AppendedBatch, LogEntry

ACTOR = "admin"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of ``vip_actions``."""

    id: int
    actor: str
    action: str
    target_type: str
    target_id: str
    reason: str
    created_at: datetime


@dataclass(slots=True)
class ActionOutcome:
    """What an action did: its audit entry, what it re-queued, what it logged itself."""

    audit: AuditEntry
    videos: list[tuple[str, str]] = field(default_factory=list)  # (video_id, video_hash)
    channels: list[str] = field(default_factory=list)
    batch: AppendedBatch | None = None


_AUDIT = """
INSERT INTO vip_actions (actor, action, target_type, target_id, reason)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, actor, action, target_type, target_id, reason, created_at
"""


async def _audit(
    conn: Connection, action: str, target_type: str, target_id: str, reason: str
) -> AuditEntry:
    row = await conn.fetchrow(_AUDIT, ACTOR, action, target_type, target_id, reason)
    assert row is not None
    return AuditEntry(**dict(row))


async def set_video_flag(
    conn: Connection,
    video_id: str,
    *,
    flag: Literal["locked", "hidden"],
    value: bool,
    action: str,
    reason: str,
) -> ActionOutcome | None:
    """Lock/unlock or hide/unhide a video; None when the video is unknown."""
    column = {"locked": "locked", "hidden": "hidden"}[flag]  # never user text in SQL
    async with transaction(conn):
        # Queue first, then the video row: the score worker holds a claimed queue row while it
        # locks the video, so the other order deadlocks with a batch holding this video.
        if not await conn.fetchval("SELECT true FROM videos WHERE video_id = $1", video_id):
            return None
        await score_store.enqueue(conn, [video_id])
        row = await conn.fetchrow(
            f"UPDATE videos SET {column} = $2 WHERE video_id = $1 RETURNING video_id, video_hash",
            video_id,
            value,
        )
        if row is None:
            return None
        audit = await _audit(conn, action, "video", video_id, reason)
    return ActionOutcome(audit, videos=[(row["video_id"], row["video_hash"])])


_LOCK_CHANNEL = """
UPDATE channels SET locked = $2, auto_flag_new = auto_flag_new AND NOT $2, last_updated = now()
WHERE channel_id = $1
RETURNING channel_id, score, total_videos, flagged_videos, top_categories, locked, auto_flag_new,
          last_updated
"""


async def set_channel_lock(
    conn: Connection, channel_id: str, *, locked: bool, action: str, reason: str
) -> ActionOutcome | None:
    """Lock/unlock a channel and log its delta; None when the channel is unknown."""
    async with transaction(conn):
        row = await conn.fetchrow(_LOCK_CHANNEL, channel_id, locked)
        if row is None:
            return None
        audit = await _audit(conn, action, "channel", channel_id, reason)
        await channel_store.enqueue(conn, [channel_id])
        batch = None
        if row["score"] > 0:  # in the synced dataset: clients hold it and must hear of this
            public = channel_object_from_row(row)
            batch = await synclog.append(
                conn,
                [
                    LogEntry(
                        kind="channel",
                        entity_id=channel_id,
                        entity_hash=entity_hash(channel_id),
                        action="update",
                        payload=channel_delta(public, action="update"),
                    )
                ],
            )
    return ActionOutcome(audit, channels=[channel_id], batch=batch)


async def set_shadowban(
    conn: Connection, user_id: str, *, banned: bool, action: str, reason: str
) -> ActionOutcome | None:
    """Shadowban/unban a user and re-queue every video they voted on; None when unknown."""
    async with transaction(conn):
        exists = await conn.fetchval(
            "SELECT true FROM users WHERE user_id = $1 FOR UPDATE", user_id
        )
        if not exists:
            return None
        video_ids = await user_store.set_shadowban(conn, user_id, banned)
        audit = await _audit(conn, action, "user", user_id, reason)
        if video_ids:
            await score_store.enqueue(conn, video_ids)
    return ActionOutcome(audit, videos=[(v, entity_hash(v)) for v in video_ids])


async def recent_actions(conn: Executor, *, limit: int) -> list[AuditEntry]:
    """The newest ``limit`` audit entries, newest first."""
    rows = await conn.fetch(
        "SELECT id, actor, action, target_type, target_id, reason, created_at FROM vip_actions"
        " ORDER BY created_at DESC, id DESC LIMIT $1",
        limit,
    )
    return [AuditEntry(**dict(r)) for r in rows]


async def top_videos(conn: Executor, *, limit: int) -> list[dict[str, Any]]:
    """The highest-scoring visible videos (an index scan on ``videos_score_idx``)."""
    rows = await conn.fetch(
        "SELECT video_id, score, total_votes, locked, channel_id, last_updated FROM videos"
        " WHERE score > 0 AND NOT hidden AND NOT shadow_hidden"
        " ORDER BY score DESC, total_votes DESC, video_id LIMIT $1",
        limit,
    )
    return [dict(r) for r in rows]


_CHANNEL_COLUMNS = (
    "channel_id, score, total_videos, flagged_videos, top_categories, locked, auto_flag_new,"
    " last_updated"
)


async def top_channels(conn: Executor, *, limit: int) -> list[dict[str, Any]]:
    """The highest-scoring channels."""
    rows = await conn.fetch(
        f"SELECT {_CHANNEL_COLUMNS} FROM channels WHERE score > 0"
        " ORDER BY score DESC, flagged_videos DESC, channel_id LIMIT $1",
        limit,
    )
    return [dict(r) for r in rows]


async def auto_flagged_channels(
    conn: Executor, *, hours: float, limit: int
) -> list[dict[str, Any]]:
    """Channels that auto-flag new videos and changed within ``hours``, newest first.

    A channel's ``last_updated`` moves whenever its aggregate changes, turning auto-flag on
    included, so this lists the channels that became auto-flagged in the window (and
    auto-flagged channels whose aggregate moved since).
    """
    rows = await conn.fetch(
        f"SELECT {_CHANNEL_COLUMNS} FROM channels WHERE auto_flag_new"
        " AND last_updated >= now() - make_interval(secs => $1)"
        " ORDER BY last_updated DESC, channel_id LIMIT $2",
        hours * 3600.0,
        limit,
    )
    return [dict(r) for r in rows]


async def score_worker_lag(conn: Executor) -> tuple[int, float]:
    """(videos queued for recalculation, age in seconds of the oldest one)."""
    row = await conn.fetchrow(
        "SELECT count(*) AS depth,"
        " COALESCE(extract(epoch FROM now() - min(enqueued_at)), 0) AS age FROM score_queue"
    )
    assert row is not None
    return int(row["depth"]), float(row["age"])
