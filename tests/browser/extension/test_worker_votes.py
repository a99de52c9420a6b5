"""A vote cast while the server is down waits in the queue, survives a worker stop, and
reaches the server with its original cast time once it is back."""

from __future__ import annotations

import pytest

from tests.browser.extension.conftest import wait_for
from tests.support import ids, pg
from tests.support.blocking import SERVER_ENV, video
from tests.support.shared import run_async

pytestmark = pytest.mark.browser


def test_a_vote_queued_while_the_server_is_down_arrives_with_its_cast_time(
    servers, extension, api_server
):
    extension.wait_status(lambda s: s["state"] == "live", what="live")
    user = extension.user_id()
    api_server.terminate()
    extension.wait_status(lambda s: s["state"] != "live", what="the outage noticed")
    video_id = ids.video_id()

    outcome = extension.send({"type": "vote", "videoId": video_id, "category": "ai_visuals"})

    assert outcome == {"queued": True}
    [queued] = extension.idb("pending_votes")
    assert (queued["videoId"], queued["category"]) == (video_id, "ai_visuals")
    assert extension.status()["pendingVotes"] == 1
    extension.stop_worker()
    restarted = servers.start(port=api_server.port, **SERVER_ENV)

    # no message: the worker's alarms (live retry, vote retry) start it again
    wait_for(extension.worker_running, timeout=90, what="the worker started by an alarm")
    wait_for(lambda: extension.idb("pending_votes") == [], timeout=90, what="the queue sent")
    assert video(restarted.url, video_id)["categories"]["ai_visuals"]["votes"] == 1
    cast_at = run_async(
        pg.fetchval,
        restarted.env["DATABASE_URL"],
        "SELECT cast_at FROM votes WHERE video_id = $1 AND user_id = $2",
        video_id,
        user,
    )
    assert abs(cast_at.timestamp() * 1000 - queued["timestamp"]) < 1
