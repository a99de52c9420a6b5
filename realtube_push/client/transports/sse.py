"""The Server-Sent Events transport: ``GET /api/live/sse`` with the cursor, events until the end.

Promises: the cursor goes both as ``seq`` and as ``Last-Event-ID``; a stream with no byte
for 2.5 heartbeats (the server sends a ``: ping`` comment every heartbeat) is declared dead;
each ``: ping`` is counted; ``deltas`` events before a ``welcome`` are ignored; a
``resync``/``reconnect``/``error`` event ends the session as it says; an answer other than
200 raises ``Refused`` (so a 503 with ``Retry-After`` is honoured like any shedding).

Events are parsed by ``wire.SSEParser`` rather than httpx-sse, which drops comment lines,
and a comment is this protocol's SSE heartbeat.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson

from realtube_push.client import wire
from realtube_push.client.options import Transport
from realtube_push.client.session import Ending, Refused, SessionHost, control_ending


class SSETransport:
    """One event stream per ``session()`` call."""

    name: Transport = "sse"

    async def session(self, host: SessionHost) -> Ending:
        """Open the stream and read it until it ends; returns how it ended."""
        cursor = host.cache.cursor
        assert cursor is not None  # the state machine full-syncs before any session
        params: dict[str, str] = {
            "epoch": cursor.epoch,
            "seq": str(cursor.seq),
            "channels": "1" if host.cache.with_channels else "0",
        }
        if host.cache.buckets is not None:
            params["buckets"] = ",".join(host.cache.buckets)
        headers = {
            **host.options.request_headers(),
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
            "Last-Event-ID": str(cursor.seq),
        }
        timeout = httpx.Timeout(host.options.connect_timeout, read=2.5 * host.heartbeat)
        async with host.http.stream(
            "GET", host.url + wire.SSE_PATH, params=params, headers=headers, timeout=timeout
        ) as response:
            if response.status_code != 200:
                await response.aread()
                raise Refused.of(response)
            return await _read(_events(response), host)


async def _read(events: AsyncIterator[wire.SSEEvent], host: SessionHost) -> Ending:
    resuming = True  # the first frame may repeat seqs the cache holds (a replay)
    connected = False
    async for event in events:
        if event.comment == "ping":
            await host.heartbeat_received()
        if event.comment is not None or not event.data:
            continue  # a comment, or a retry-only block
        try:
            frame = orjson.loads(event.data)
        except orjson.JSONDecodeError as exc:
            raise wire.WireError("SSE data is not JSON") from exc
        kind = frame.get("t") if isinstance(frame, dict) else None
        if kind == "welcome" and not connected:
            await host.welcomed(frame, "sse")
            connected = True
        elif kind == "deltas" and connected:
            await host.apply_frame(frame, resuming=resuming, source="sse")
            resuming = False
        elif kind in ("resync", "reconnect", "error"):
            return control_ending(frame)
    return Ending("lost", "the event stream ended")


async def _events(response: httpx.Response) -> AsyncIterator[wire.SSEEvent]:
    parser = wire.SSEParser()
    async for chunk in response.aiter_text():
        for event in parser.feed(chunk):
            yield event
