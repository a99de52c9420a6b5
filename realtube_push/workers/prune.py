"""The prune worker: trims the sync log to its retention window.

Promises: every ``prune_interval_seconds`` the deltas older than ``sync_retention_hours`` are
deleted and ``sync_meta.pruned_through`` is raised to the highest seq deleted, so a client whose
cursor falls in the pruned range is told to resync rather than silently missing deltas
(see ``store.synclog``). Newer deltas are never touched. Several instances may prune at once:
deletes of the same rows serialise, and ``pruned_through`` only ever grows.
"""

from __future__ import annotations

from typing import Final

import anyio
import structlog

from realtube_push.services import Services
from realtube_push.store import synclog
from realtube_push.workers.transient import TRANSIENT_ERRORS

log = structlog.get_logger("realtube.prune")

RETRY_SECONDS: Final = 5.0


async def prune_once(svc: Services) -> int:
    """Delete the deltas past retention now; returns how many went."""
    return await synclog.prune(svc.pool, retention_seconds=svc.settings.sync_retention_hours * 3600)


async def run(svc: Services) -> None:
    """Prune at start and then every ``prune_interval_seconds``.

    Database failures are logged and retried after a short pause; cancellation propagates.
    """
    while True:
        try:
            removed = await prune_once(svc)
        except TRANSIENT_ERRORS:
            log.warning("prune_failed", exc_info=True)
            await anyio.sleep(RETRY_SECONDS)
            continue
        svc.status.mark_run("prune_worker")
        if removed:
            log.info("sync_log_pruned", deltas=removed)
        await anyio.sleep(svc.settings.prune_interval_seconds)
