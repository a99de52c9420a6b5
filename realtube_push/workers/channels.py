"""The channel worker: aggregates video scores into channel scores and logs channel deltas.

Promises:
- a channel queued by the score worker (its videos changed) is aggregated once it has waited
  the debounce window, by exactly one worker; every ``channel_interval_seconds`` every channel
  with videos is queued again, so a channel is never staler than that interval even if a
  queue row was lost to a bug or a manual edit;
- one batch = one transaction: channel rows, queue deletions and sync-log deltas commit
  together, and only then are caches invalidated and the batch published;
- a channel delta is logged only when the public channel object changed and the channel is,
  or was, in the synced dataset (score > 0): a channel that stays at 0 tells clients nothing.
  The action is "update" while the new score is > 0 and "remove" when it falls to 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import anyio
import structlog

from realtube_push.domain.channels import ChannelVideo, score_channel
from realtube_push.domain.ids import entity_hash
from realtube_push.domain.views import channel_delta, channel_object
from realtube_push.services import Services
from realtube_push.store import channels as channel_store
from realtube_push.store import synclog
from realtube_push.store.channels import ChannelForAggregation, ChannelWrite
from realtube_push.store.db import transaction
from realtube_push.store.synclog import LogEntry
from realtube_push.workers.transient import TRANSIENT_ERRORS

log = structlog.get_logger("realtube.channels")

BATCH_SIZE: Final = 200
# The queue is polled, not notified: a floor keeps a zero debounce from spinning the loop.
MIN_POLL_SECONDS: Final = 0.2
RETRY_SECONDS: Final = 1.0


@dataclass(frozen=True, slots=True)
class ChannelPlan:
    """What a batch will write: new aggregates, deltas to log, channels whose object changed."""

    writes: list[ChannelWrite]
    entries: list[LogEntry]
    changed: list[str]


def _public(
    channel_id: str,
    *,
    score: float,
    total_videos: int,
    flagged_videos: int,
    top_categories: Sequence[str],
    locked: bool,
    auto_flag: bool,
    last_updated: datetime,
) -> dict[str, Any]:
    return channel_object(
        channel_id=channel_id,
        score=score,
        total_videos=total_videos,
        flagged_videos=flagged_videos,
        top_categories=top_categories,
        locked=locked,
        auto_flag=auto_flag,
        last_updated=last_updated,
    )


def plan_batch(channels: Sequence[ChannelForAggregation], *, now: datetime) -> ChannelPlan:
    """Score each channel from its voted videos; keep only the channels whose object changed.

    "Changed" compares the public channel object without ``lastUpdated``, so the periodic full
    pass rewrites nothing and logs nothing for a channel whose videos did not move.
    """
    writes: list[ChannelWrite] = []
    entries: list[LogEntry] = []
    changed: list[str] = []
    for channel in channels:
        result = score_channel(
            [ChannelVideo(s, votes, cats) for s, votes, cats in channel.videos],
            locked=channel.locked,
            current_score=channel.score,
        )
        before = _public(
            channel.channel_id,
            score=channel.score,
            total_videos=channel.total_videos,
            flagged_videos=channel.flagged_videos,
            top_categories=channel.top_categories,
            locked=channel.locked,
            auto_flag=channel.auto_flag_new,
            last_updated=now,
        )
        after = _public(
            channel.channel_id,
            score=result.score,
            total_videos=result.tracked,
            flagged_videos=result.flagged,
            top_categories=result.top_categories,
            locked=channel.locked,
            auto_flag=result.auto_flag_new,
            last_updated=now,
        )
        if after == before:
            continue
        writes.append(
            ChannelWrite(
                channel_id=channel.channel_id,
                score=result.score,
                total_videos=result.tracked,
                flagged_videos=result.flagged,
                top_categories=result.top_categories,
                auto_flag_new=result.auto_flag_new,
            )
        )
        changed.append(channel.channel_id)
        if result.score <= 0 and channel.score <= 0:
            continue  # out of the synced dataset before and after: clients hold nothing
        action = "update" if result.score > 0 else "remove"
        entries.append(
            LogEntry(
                kind="channel",
                entity_id=channel.channel_id,
                entity_hash=entity_hash(channel.channel_id),
                action=action,
                payload=channel_delta(after, action=action),
            )
        )
    return ChannelPlan(writes, entries, changed)


async def process_batch(svc: Services, *, limit: int = BATCH_SIZE) -> int:
    """Claim, aggregate and commit one batch of ripe channels; then invalidate and publish.

    Returns how many channels were claimed (0 when none is ripe), changed or not.
    """
    async with svc.pool.acquire() as conn, transaction(conn):
        ids = await channel_store.claim_batch(
            conn, limit, debounce_seconds=svc.settings.channel_debounce_seconds
        )
        if not ids:
            return 0
        channels = await channel_store.load_batch(conn, ids)
        now: datetime = await conn.fetchval("SELECT now()")
        plan = plan_batch(channels, now=now)
        await channel_store.write_channels(conn, plan.writes, now)
        # Last statement: the sync_meta lock it takes is held only until the commit below.
        batch = await synclog.append(conn, plan.entries)
    if plan.changed:
        await svc.publisher.after_commit(batch, channels=plan.changed)
    svc.status.mark_run("channel_worker")
    return len(ids)


async def drain(svc: Services) -> int:
    """Process batches until no ripe channel is left; returns how many were claimed."""
    total = 0
    while (n := await process_batch(svc)) > 0:
        total += n
    return total


async def run(svc: Services) -> None:
    """Drain ripe channels every debounce window; queue every channel each full interval.

    The full pass runs first, at start, so a fresh instance converges without waiting an
    interval. Database and Redis failures are logged and retried; cancellation propagates.
    """
    poll = max(svc.settings.channel_debounce_seconds, MIN_POLL_SECONDS)
    next_full = anyio.current_time()
    while True:
        try:
            if anyio.current_time() >= next_full:
                queued = await channel_store.enqueue_all(svc.pool)
                next_full = anyio.current_time() + svc.settings.channel_interval_seconds
                log.info("channel_full_pass_queued", channels=queued)
            await drain(svc)
            svc.status.mark_run("channel_worker")
        except TRANSIENT_ERRORS:
            log.warning("channel_batch_failed", exc_info=True)
            await anyio.sleep(RETRY_SECONDS)
        await anyio.sleep(poll)
