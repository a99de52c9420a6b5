"""The full-blob worker: rebuilds the full-sync blob (``fullblob.py``) when the log moved."""

from __future__ import annotations

from realtube_push import fullblob
from realtube_push.services import Services
from realtube_push.workers.periodic import run_periodically


async def run(svc: Services) -> None:
    """Rebuild at start (if needed) and then every ``full_blob_interval_seconds`` when moved."""
    await run_periodically(
        svc,
        name="full_blob_worker",
        interval=svc.settings.full_blob_interval_seconds,
        job=lambda: fullblob.rebuild(svc.pool),
    )
