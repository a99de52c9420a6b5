"""The score worker: turns queued votes into scores, sync-log deltas and a bus publish.

Promises:
- every video in ``score_queue`` is recalculated at least once after it was queued, by some
  worker, even if the NOTIFY was lost or the worker crashed mid-batch (the queue row goes
  back on rollback);
- two workers never recalculate the same video concurrently (SKIP LOCKED);
- one batch = one transaction: scores, channel queue and the sync-log deltas commit together,
  and only then are caches invalidated and the batch published.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import anyio
import asyncpg
import structlog

from realtube_push.domain import scoring
from realtube_push.domain.views import in_synced_dataset, video_delta
from realtube_push.services import Services
from realtube_push.store import scores as score_store
from realtube_push.store import synclog
from realtube_push.store.db import transaction
from realtube_push.store.scores import ScoreWrite, VideoForScoring
from realtube_push.store.synclog import LogEntry
from realtube_push.workers.transient import TRANSIENT_ERRORS

log = structlog.get_logger("realtube.score")

NOTIFY_CHANNEL = "rt_score_queue"
# A connection lost mid-batch (a PostgreSQL restart or failover) surfaces not only as
# PostgresError: asyncpg also raises InterfaceError (the transaction's exit on a closed
# connection) and InternalClientError (the pool resetting the broken connection on release).
# Retry on all of them rather than take the process, HTTP included, down.


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """What a batch will write: new scores, deltas to log, channels to re-aggregate."""

    writes: list[ScoreWrite]
    entries: list[LogEntry]
    channels: list[str]


def plan_batch(
    videos: Sequence[VideoForScoring], *, now: datetime, full_confidence_weight: float
) -> BatchPlan:
    """Score each video from its votes and decide which deltas the change produces.

    A delta is logged when the video is in the synced dataset now ("update") or was before
    ("remove"); a video that was and stays out of it (score 0 or hidden) tells clients nothing.
    """
    writes: list[ScoreWrite] = []
    entries: list[LogEntry] = []
    channels: list[str] = []
    for video in videos:
        result = scoring.score_video(
            [
                scoring.CastVote(category, 0.0 if banned else weight, vip)
                for category, weight, vip, banned in video.votes
            ],
            locked=video.locked,
            current_score=video.score,
            preliminary=video.preliminary,
            full_confidence_weight=full_confidence_weight,
        )
        weighted = {c: t.weighted_score for c, t in result.categories.items()}
        writes.append(ScoreWrite(video.video_id, result.score, result.locked, weighted))
        if video.channel_id is not None:
            channels.append(video.channel_id)
        hidden = video.hidden or video.shadow_hidden
        now_in = in_synced_dataset(result.score, hidden=hidden)
        if not now_in and video.score <= 0:
            continue
        tallies = {c: (t.votes, t.weighted_score) for c, t in result.categories.items()}
        action = "update" if now_in else "remove"
        entries.append(
            LogEntry(
                kind="video",
                entity_id=video.video_id,
                entity_hash=video.video_hash,
                action=action,
                payload=video_delta(
                    video_id=video.video_id,
                    score=result.score,
                    categories=tallies,
                    channel_id=video.channel_id,
                    locked=result.locked,
                    total_votes=result.total_votes,
                    last_updated=now,
                    action=action,
                ),
            )
        )
    return BatchPlan(writes, entries, channels)


async def process_batch(ctx: Services) -> int:
    """Claim, recalculate and commit one batch; then invalidate and publish. Returns its size."""
    async with ctx.pool.acquire() as conn, transaction(conn):
        ids = await score_store.claim_batch(conn, ctx.settings.score_batch_size)
        if not ids:
            return 0
        videos = await score_store.load_batch(conn, ids)
        now = await conn.fetchval("SELECT now()")
        plan = plan_batch(
            videos, now=now, full_confidence_weight=ctx.settings.full_confidence_weight
        )
        await score_store.write_scores(conn, plan.writes)
        await score_store.enqueue_channels(conn, plan.channels)
        batch = await synclog.append(conn, plan.entries)
    await ctx.publisher.after_commit(batch, videos=[(v.video_id, v.video_hash) for v in videos])
    ctx.metrics.score_batches.inc()
    ctx.metrics.scores_recalculated.inc(len(ids))
    ctx.status.mark_run("score_worker")
    return len(ids)


async def drain(ctx: Services) -> int:
    """Recalculate until the queue is empty (used on shutdown and by tests)."""
    total = 0
    while (n := await process_batch(ctx)) > 0:
        total += n
    return total


async def run(ctx: Services) -> None:
    """Wake on NOTIFY (or every poll interval), wait the debounce window, drain the queue."""
    wake = anyio.Event()

    def on_notify(*_: object) -> None:
        wake.set()

    while True:
        try:
            listener = await asyncpg.connect(ctx.database_url)
        except TRANSIENT_ERRORS:
            log.warning("score_listener_connect_failed", exc_info=True)
            await anyio.sleep(ctx.settings.score_poll_seconds)
            continue
        try:
            await listener.add_listener(NOTIFY_CHANNEL, on_notify)
            while not listener.is_closed():
                with anyio.move_on_after(ctx.settings.score_poll_seconds):
                    await wake.wait()
                wake = anyio.Event()
                if ctx.settings.score_debounce_ms:
                    await anyio.sleep(ctx.settings.score_debounce_ms / 1000)
                try:
                    await drain(ctx)
                except TRANSIENT_ERRORS:
                    log.warning("score_batch_failed", exc_info=True)
                    await anyio.sleep(min(ctx.settings.score_poll_seconds, 1.0))
                ctx.status.mark_run("score_worker")
        except TRANSIENT_ERRORS:  # the listener's connection went away: reconnect
            log.warning("score_listener_failed", exc_info=True)
            await anyio.sleep(min(ctx.settings.score_poll_seconds, 1.0))
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await listener.close()
