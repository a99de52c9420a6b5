"""With the live channel blocked on the way (a proxy), the worker keeps the data current by
the next transport, also after Chrome stopped it: SSE kept alive and restarted by its watch
alarm, or polling driven by alarms."""

from __future__ import annotations

import pytest

from tests.browser.extension.conftest import full_syncs, logged_requests, wait_for
from tests.browser.extension.proxy import blocking_proxy
from tests.browser.extension.test_worker_resume import cached_scores, server_scores, votes_logged

pytestmark = pytest.mark.browser


def current(extension, server) -> bool:
    return cached_scores(extension) == server_scores(server)


def test_websocket_blocked_sse_keeps_it_current_across_a_worker_stop(extension, api_server):
    with blocking_proxy(api_server.url, block=("ws",)) as proxy:
        extension.set_settings(apiBase=proxy.url, pollMinutes=0.05)
        extension.wait_status(
            lambda s: s["state"] == "live" and s["transport"] == "sse", what="live over SSE"
        )
        votes_logged(api_server, 2)
        wait_for(lambda: current(extension, api_server), what="deltas over SSE")
        syncs = full_syncs(api_server)

        extension.stop_worker()
        missed = votes_logged(api_server, 2)

        wait_for(extension.worker_running, timeout=30, what="the worker started by its alarm")
        wait_for(
            lambda: set(missed) <= set(cached_scores(extension)),
            timeout=30,
            what="the missed votes replayed over SSE",
        )
        status = extension.wait_status(
            lambda s: s["state"] == "live" and s["transport"] == "sse", what="live over SSE"
        )
        assert current(extension, api_server)
        assert full_syncs(api_server) == syncs
        assert status["cursor"]["seq"] > 0


def test_websocket_and_sse_blocked_alarms_poll_across_a_worker_stop(extension, api_server):
    with blocking_proxy(api_server.url, block=("ws", "sse")) as proxy:
        extension.set_settings(apiBase=proxy.url, pollMinutes=0.05)
        extension.wait_status(
            lambda s: s["state"] == "polling" and s["transport"] == "poll", what="polling"
        )
        votes_logged(api_server, 2)
        wait_for(lambda: current(extension, api_server), what="deltas by polling")
        syncs = full_syncs(api_server)

        extension.stop_worker()
        polls = len(logged_requests(api_server, "/api/sync/delta"))
        missed = votes_logged(api_server, 2)

        wait_for(extension.worker_running, timeout=30, what="the worker started by its alarm")
        wait_for(
            lambda: set(missed) <= set(cached_scores(extension)),
            timeout=30,
            what="the missed votes polled",
        )
        assert current(extension, api_server)
        assert len(logged_requests(api_server, "/api/sync/delta")) > polls
        assert full_syncs(api_server) == syncs
