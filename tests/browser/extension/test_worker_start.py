"""First start of the extension: the worker full-syncs, then goes live over the WebSocket."""

from __future__ import annotations

import pytest

from tests.browser.extension.conftest import full_syncs
from tests.support import ids
from tests.support.blocking import in_full_sync, vote, wait_until

pytestmark = pytest.mark.browser


def test_first_start_full_syncs_then_goes_live_over_websocket(extension, api_server):
    flagged = ids.video_id()
    vote(api_server.url, flagged)
    wait_until(lambda: in_full_sync(api_server.url, [flagged]), what="the vote in the full sync")

    status = extension.wait_status(
        lambda s: s["state"] == "live" and s["transport"] == "ws", what="live over ws"
    )

    assert status["lastError"] is None
    assert status["cursor"]["epoch"], status
    assert full_syncs(api_server) == 1
    answer = extension.send({"type": "lookup", "videoIds": [flagged, ids.video_id()]})
    assert answer["videos"][flagged]["videoId"] == flagged
    assert answer["videos"][flagged]["score"] > 0
    assert answer["settings"]["apiBase"] == api_server.url
    assert extension.status()["cachedVideos"] == 1
