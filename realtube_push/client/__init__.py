"""The Python live client: a local cache of the synced dataset kept current over the live channel.

Backend-neutral (AnyIO + httpx + httpx-ws): runs under asyncio and trio. Nothing here imports
the server side, and it needs none of the server's dependencies (``pip install
realtube-push`` is enough; the server is ``realtube-push[server]``). Typical use::

    client = LiveClient("https://realtube.example", LiveOptions(buckets=("ab", "c3")))
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.run)
        await client.wait_for_status(lambda s: s.connected)
        client.cache.videos.get("dQw4w9WgXcQ")  # current entry, or None

Modules: ``live`` (``LiveClient``), ``options`` (``LiveOptions``), ``machine`` (the state
machine: fallback, reconnects, shedding, full syncs), ``transports`` (WebSocket, SSE,
polling), ``session`` (what a transport session reports and how it ends), ``observe``
(``Status``, ``Retry``, callbacks), ``cache`` (``LocalCache``, ``Cursor``, contiguity rules),
``rest`` (the sync endpoints), ``wire`` (frames, codecs, SSE parser), ``backoff``, ``watch``
(the ``realtube-push watch`` command).
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
from realtube_push.client.live import LiveClient
from realtube_push.client.observe import Retry, Status
from realtube_push.client.options import TRANSPORTS, LiveOptions, Transport

__all__ = [
    "TRANSPORTS",
    "Backoff",
    "Change",
    "Cursor",
    "CursorGap",
    "EpochMismatch",
    "LiveClient",
    "LiveOptions",
    "LocalCache",
    "NoCursor",
    "ResyncRequired",
    "Retry",
    "Status",
    "Transport",
]
