"""Sync-log pruning against the real database."""

from __future__ import annotations

import pytest

from realtube_push.services import Services
from realtube_push.store import synclog
from realtube_push.store.synclog import LogEntry
from realtube_push.workers import prune

pytestmark = pytest.mark.anyio


async def append(svc: Services, count: int, *, hours_ago: float) -> list[int]:
    """``count`` video deltas appended as if ``hours_ago`` hours ago; returns their seqs."""
    entries = [
        LogEntry("video", f"v{i}", f"h{i}", "update", {"videoId": f"v{i}"}) for i in range(count)
    ]
    async with svc.pool.acquire() as conn, conn.transaction():
        batch = await synclog.append(conn, entries)
    assert batch is not None
    seqs = list(range(batch.first_seq, batch.last_seq + 1))
    await svc.pool.execute(
        "UPDATE sync_cache SET created_at = now() - make_interval(secs => $2)"
        " WHERE seq = ANY($1::bigint[])",
        seqs,
        hours_ago * 3600,
    )
    return seqs


async def remaining(svc: Services) -> list[int]:
    return [r["seq"] for r in await svc.pool.fetch("SELECT seq FROM sync_cache ORDER BY seq")]


async def test_prune_removes_only_deltas_past_retention(services: Services) -> None:
    old = await append(services, 3, hours_ago=49)
    recent = await append(services, 2, hours_ago=47)
    fresh = await append(services, 1, hours_ago=0)

    assert await prune.prune_once(services) == len(old)

    assert await remaining(services) == recent + fresh


async def test_prune_moves_pruned_through_to_the_last_seq_removed(services: Services) -> None:
    old = await append(services, 4, hours_ago=50)
    await append(services, 2, hours_ago=1)

    await prune.prune_once(services)

    position = await synclog.position(services.pool)
    assert position.pruned_through == old[-1]
    assert position.last_seq == old[-1] + 2


async def test_prune_with_nothing_old_changes_nothing(services: Services) -> None:
    kept = await append(services, 3, hours_ago=1)

    assert await prune.prune_once(services) == 0

    assert await remaining(services) == kept
    assert (await synclog.position(services.pool)).pruned_through == 0


async def test_pruned_through_never_moves_back(services: Services) -> None:
    first = await append(services, 2, hours_ago=60)
    await prune.prune_once(services)

    assert await prune.prune_once(services) == 0

    assert (await synclog.position(services.pool)).pruned_through == first[-1]


async def test_retention_follows_the_setting(services: Services) -> None:
    services.settings = services.settings.model_copy(update={"sync_retention_hours": 2.0})
    old = await append(services, 1, hours_ago=3)
    kept = await append(services, 1, hours_ago=1)

    assert await prune.prune_once(services) == 1

    assert await remaining(services) == kept
    assert (await synclog.position(services.pool)).pruned_through == old[-1]
