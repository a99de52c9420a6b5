"""The Python live client: a local cache of the synced dataset kept current over the live channel.

Backend-neutral (AnyIO + httpx + httpx-ws): runs under asyncio and trio. Nothing here imports
the server side (asyncpg, redis, quart). Typical use::

    client = LiveClient("https://realtube.example", buckets=["ab", "c3"])
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.run)
        await client.wait_for_cursor(1)         # synced
        client.cache.videos.get("dQw4w9WgXcQ")  # current entry, or None

Modules: ``cache`` (``LocalCache``, ``Cursor``, contiguity rules), ``live`` (``LiveClient``:
transports, fallback, reconnects), ``wire`` (frames, codecs, SSE parser), ``backoff``,
``watch`` (the ``realtube-push watch`` command).
"""

from realtube_push.client.backoff import Backoff
from realtube_push.client.cache import (
    Change,
    Cursor,
    CursorGap,
    EpochMismatch,
    LocalCache,
    NoCursor,
    ResyncRequired,
)
from realtube_push.client.live import TRANSPORTS, LiveClient, Status, Transport

__all__ = [
    "TRANSPORTS",
    "Backoff",
    "Change",
    "Cursor",
    "CursorGap",
    "EpochMismatch",
    "LiveClient",
    "LocalCache",
    "NoCursor",
    "ResyncRequired",
    "Status",
    "Transport",
]
