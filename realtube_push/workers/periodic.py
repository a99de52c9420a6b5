"""The shape every periodic background job shares.

Run the job now and then every ``interval`` seconds. A transient failure (the database or
Redis went away, see ``transient.py``) is logged and retried after ``retry_seconds``; anything
else is a bug and propagates, ending the process's task group. Cancellation propagates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import structlog

from realtube_push.services import Services
from realtube_push.workers.transient import TRANSIENT_ERRORS

log = structlog.get_logger("realtube.workers")


async def run_periodically(
    svc: Services,
    *,
    name: str,
    interval: float,
    job: Callable[[], Awaitable[object]],
    retry_seconds: float = 5.0,
) -> None:
    """Run ``job`` forever on its interval; ``name`` marks its runs in /health/ready."""
    while True:
        try:
            await job()
        except TRANSIENT_ERRORS:
            log.warning("job_failed", job=name, exc_info=True)
            await anyio.sleep(retry_seconds)
            continue
        svc.status.mark_run(name)
        await anyio.sleep(interval)
