"""The JS client and a server shedding load (docs/protocol.md section 7): it waits as told
and comes back on the same transport; an overloaded server is no reason to fall back.

Browser code cannot see the status of a refused WebSocket handshake (only a close with code
1006), so a 503 on the WebSocket looks like a failed attempt; the client learns the reason on
SSE, where ``fetch`` sees the 503 and its ``Retry-After``.
"""

from __future__ import annotations

import itertools
import time
from urllib.parse import urlparse

import msgpack
import pytest

from tests.browser.jsclient import open_page, start_client, wait_for_status
from tests.support.blocking import SERVER_ENV, subscribed

pytestmark = pytest.mark.browser


def test_sse_shed_with_503_waits_its_retry_after_and_stays_on_sse(servers, page):
    server = servers.start(**SERVER_ENV, LIVE_MAX_CONNECTIONS="1", LIVE_SHED_MAX_RETRY_SECONDS="2")
    page.route_web_socket("**/api/live/ws", lambda ws: ws.close())  # WebSocket unusable here
    sse: list[float] = []
    polls: list[str] = []

    def on_request(request) -> None:
        path = urlparse(request.url).path
        if path == "/api/live/sse":
            sse.append(time.monotonic())
        elif path == "/api/sync/delta":
            polls.append(request.url)

    page.on("request", on_request)
    open_page(page, server.url)
    with subscribed(server.url):  # holds the one live connection: the client is shed
        start_client(page)
        page.wait_for_function("() => window.client.status.lastError?.includes('busy')")
        status = page.evaluate("window.client.status")
        assert status["nextRetryAt"] > time.time() * 1000
        while len(sse) < 3:  # shed three times (each a wait of 1-2 s)
            page.wait_for_timeout(100)
    wait_for_status(page, "live", transport="sse")

    gaps = [later - earlier for earlier, later in itertools.pairwise(sse)]
    assert all(gap >= 0.9 for gap in gaps), gaps  # Retry-After is 1-2 s, plus jitter
    assert polls == []  # overloaded is not a reason to fall back to polling


def test_a_websocket_overloaded_notice_waits_and_retries_the_websocket(servers, page):
    server = servers.start(**SERVER_ENV)
    opened: list[float] = []

    def handler(ws) -> None:
        opened.append(time.monotonic())
        if len(opened) > 1:
            ws.connect_to_server()  # the second attempt reaches the real server
            return

        def shed(_message) -> None:
            notice = {"t": "reconnect", "reason": "overloaded", "retryAfterMs": 1500}
            ws.send(msgpack.packb(notice))
            ws.close(code=1013, reason="try again later")

        ws.on_message(shed)

    page.route_web_socket("**/api/live/ws", handler)
    sse: list[str] = []
    page.on(
        "request",
        lambda r: sse.append(r.url) if urlparse(r.url).path == "/api/live/sse" else None,
    )
    open_page(page, server.url)

    start_client(page)
    wait_for_status(page, "live", transport="ws")

    assert len(opened) == 2
    assert opened[1] - opened[0] >= 1.4  # its retryAfterMs, not a quick backoff
    assert sse == []  # same transport: no fallback to SSE
