"""Bad settings and unfriendly servers: a clear message in the status, no crash loop, the
next attempt visible (``nextRetryAt``)."""

from __future__ import annotations

import time

import pytest

from tests.browser.extension.conftest import logged_requests, wait_for
from tests.support.blocking import SERVER_ENV
from tests.support.servers import free_port

pytestmark = pytest.mark.browser


def test_an_api_url_that_is_not_a_url_is_reported_and_nothing_runs(extension):
    extension.set_settings(apiBase="not a url")

    status = extension.wait_status(lambda s: s["state"] == "error", what="the error state")

    assert "http://" in status["lastError"]
    assert "https://" in status["lastError"]
    assert status["nextRetryAt"] is None
    answer = extension.send({"type": "lookup", "videoIds": ["dQw4w9WgXcQ"], "channelIds": []})
    assert answer["videos"] == {"dQw4w9WgXcQ": None}
    vote = extension.send({"type": "vote", "videoId": "dQw4w9WgXcQ", "category": "fully_ai"})
    assert vote["queued"] is False
    assert "URL" in vote["error"]


def test_an_unreachable_server_backs_off_visibly(extension):
    unreachable = f"http://127.0.0.1:{free_port()}"
    extension.set_settings(apiBase=unreachable)

    status = extension.wait_status(
        lambda s: s["state"] == "offline" and s["nextRetryAt"] is not None, what="a backoff"
    )

    assert status["lastError"] == f"Cannot reach the server at {unreachable}"
    assert status["nextRetryAt"] > time.time() * 1000 - 1000
    # each failed attempt plans the next one (a backoff, not a loop)
    for _ in range(3):
        planned = extension.status()["nextRetryAt"]
        wait_for(
            lambda p=planned: extension.status()["nextRetryAt"] not in (None, p),
            timeout=90,
            what="the next attempt planned",
        )
    assert extension.status()["lastError"] == f"Cannot reach the server at {unreachable}"


def test_an_origin_the_server_refuses_is_reported_while_sse_serves(servers, extension):
    # The WebSocket handshake carries the extension's Origin and is refused (403, which
    # browser code only sees as a failed WebSocket); the worker's SSE request, a GET to a
    # host it has permission for, carries none and is served.
    strict = servers.start(**{**SERVER_ENV, "CORS_ORIGINS": "https://elsewhere.example"})
    extension.set_settings(apiBase=strict.url)

    status = extension.wait_status(
        lambda s: s["state"] == "live" and s["transport"] == "sse", what="live over SSE"
    )

    # live, with the reason it is not the WebSocket
    assert "WebSocket" in status["lastError"]
    assert "refused" in status["lastError"]
    # the WebSocket is tried again when the upgrade interval (5 min) is over, not in a loop
    assert status["nextRetryAt"] > time.time() * 1000 + 60_000
    later = extension.wait_status(lambda s: s["cursor"]["epoch"] is not None, what="synced")
    assert (later["transport"], later["nextRetryAt"]) == ("sse", status["nextRetryAt"])
    assert len(logged_requests(strict, "/api/live/sse", identified=False)) == 1
