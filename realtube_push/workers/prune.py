"""The prune worker: trims the sync log to its retention window.

Promises: every ``prune_interval_seconds`` the deltas older than ``sync_retention_hours`` are
deleted and ``sync_meta.pruned_through`` is raised to the highest seq deleted, so a client whose
cursor falls in the pruned range is told to resync rather than silently missing deltas
(see ``store.synclog``). Newer deltas are never touched. Several instances may prune at once:
deletes of the same rows serialise, and ``pruned_through`` only ever grows.
"""

from __future__ import annotations

import structlog

from realtube_push.services import Services
from realtube_push.store import synclog
from realtube_push.workers.periodic import run_periodically

log = structlog.get_logger("realtube.prune")


async def prune_once(svc: Services) -> int:
    """Delete the deltas past retention now; returns how many went."""
    return await synclog.prune(svc.pool, retention_seconds=svc.settings.sync_retention_hours * 3600)


async def run(svc: Services) -> None:
    """Prune at start and then every ``prune_interval_seconds``."""

    async def prune_and_report() -> None:
        removed = await prune_once(svc)
        if removed:
            log.info("sync_log_pruned", deltas=removed)

    await run_periodically(
        svc,
        name="prune_worker",
        interval=svc.settings.prune_interval_seconds,
        job=prune_and_report,
    )
