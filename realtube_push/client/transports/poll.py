"""The polling transport: ``GET /api/sync/delta`` every ``poll_interval``, pages to the end.

Promises: one poll follows ``hasMore`` until the page that says no more; a conditional full
sync (``If-None-Match``) runs first whenever ``full_sync_interval`` has passed since the
last one; the session counts as connected after its first complete poll and lasts until an
error (a ``"resync": true`` page raises ``ResyncRequired`` from the cache).
"""

from __future__ import annotations

import anyio

from realtube_push.client.options import Transport
from realtube_push.client.rest import fetch_delta_page
from realtube_push.client.session import Ending, SessionHost


class PollingTransport:
    """Polls until an error ends the session (it never ends by itself)."""

    name: Transport = "poll"

    async def session(self, host: SessionHost) -> Ending:
        """Poll forever; returns only through an exception (turned into an ending)."""
        connected = False
        while True:
            if host.full_sync_due():
                await host.full_sync(conditional=True)
            await _poll_once(host)
            if not connected:
                connected = True
                await host.polled()
            await anyio.sleep(host.options.poll_interval)


async def _poll_once(host: SessionHost) -> None:
    headers = host.options.request_headers()
    while True:
        cursor = host.cache.cursor
        assert cursor is not None  # the state machine full-syncs before any session
        page = await fetch_delta_page(host.http, host.url, headers, cursor)
        await host.apply_page(page, after=cursor.seq)
        if not page.get("hasMore"):
            return
