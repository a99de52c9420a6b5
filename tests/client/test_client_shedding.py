"""``LiveClient`` against an overloaded server: it waits as told and keeps its transport.

The peer is a real HTTP/WebSocket server on a real socket (``tests/client/peer.py``), scripted
to shed (``reconnect`` notice + close 1013, HTTP 503 with ``Retry-After``) and to spread a
resync (``retryAfterMs``), which the real server does only under load.
"""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import pytest

from realtube_push.client import Retry, Status
from realtube_push.client.wire import DELTA_PATH, FULL_PATH, SSE_PATH, WS_PATH
from tests.client.peer import Act, Peer

pytestmark = pytest.mark.anyio

DEADLINE = 10.0


#: timer granularity: a wait measured on the peer's clock may end this much early
SLACK = 0.02


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def run_until_connected(
    make_client: Any, url: str, **options: Any
) -> tuple[Status, list[Retry]]:
    """The client's status once connected, and the retries it announced before."""
    retries: list[Retry] = []
    client = make_client(url, on_retry=retries.append, **options)
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.run)
        with anyio.fail_after(DEADLINE):
            status = await client.wait_for_status(lambda s: s.connected)
        tg.cancel_scope.cancel()
    return status, retries


async def test_overloaded_websocket_waits_retry_after_ms_and_stays_on_websocket(serve, make_client):
    # three sheds: more than fallback_after (2) failures would have moved a lost client to SSE
    peer = Peer(ws=[Act("overloaded", ms=300)] * 3)
    async with serve(peer) as url:
        status, retries = await run_until_connected(make_client, url)
    assert status.transport == "ws"
    assert peer.times(SSE_PATH) == []
    attempts = peer.times(WS_PATH)
    assert len(attempts) == 4
    assert all(gap >= 0.3 - SLACK for gap in gaps(attempts))
    assert [(r.next, r.delay, r.reason) for r in retries] == [("ws", 0.3, "overloaded")] * 3


async def test_close_1013_without_a_notice_backs_off_and_stays_on_websocket(serve, make_client):
    peer = Peer(ws=[Act("overloaded", ms=None)] * 3)
    async with serve(peer) as url:
        status, retries = await run_until_connected(make_client, url)
    assert status.transport == "ws"
    assert peer.times(SSE_PATH) == []
    assert len(peer.times(WS_PATH)) == 4
    assert [r.next for r in retries] == ["ws"] * 3
    assert all(r.reason.startswith("closed 1013") for r in retries)


async def test_websocket_handshake_refused_with_503_waits_retry_after_and_stays_on_websocket(
    serve, make_client
):
    peer = Peer(ws=[Act("refuse", seconds=1)] * 2)
    async with serve(peer) as url:
        status, retries = await run_until_connected(make_client, url, retry_after_jitter=0.1)
    assert status.transport == "ws"
    assert peer.times(SSE_PATH) == []
    attempts = peer.times(WS_PATH)
    assert len(attempts) == 3
    assert all(gap >= 1.0 - SLACK for gap in gaps(attempts))
    assert all(r.next == "ws" and 1.0 <= r.delay <= 1.1 for r in retries)
    assert [r.reason for r in retries] == ["HTTP 503 (Retry-After 1s)"] * 2


async def test_event_stream_refused_with_503_waits_retry_after_and_stays_on_sse(serve, make_client):
    peer = Peer(sse=[Act("refuse", seconds=1)] * 2)
    async with serve(peer) as url:
        status, _ = await run_until_connected(
            make_client, url, transports=("sse", "poll"), retry_after_jitter=0.1
        )
    assert status.transport == "sse"
    assert peer.times(DELTA_PATH) == []
    attempts = peer.times(SSE_PATH)
    assert len(attempts) == 3
    assert all(gap >= 1.0 - SLACK for gap in gaps(attempts))


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_resync_waits_retry_after_ms_before_the_full_sync(serve, make_client, transport):
    peer = Peer(**{transport: [Act("resync", ms=500)]})
    async with serve(peer) as url:
        client = make_client(url, transports=(transport,))
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.run)
            with anyio.fail_after(DEADLINE):
                status = await client.wait_for_status(lambda s: s.connected and s.full_syncs == 2)
            tg.cancel_scope.cancel()
    _, second_sync = peer.times(FULL_PATH)
    (resync_sent,) = peer.resyncs_sent
    assert second_sync - resync_sent >= 0.5 - SLACK
    assert status.resyncs == 1
    assert status.last_resync_reason == "epoch"
