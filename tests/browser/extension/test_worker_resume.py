"""A stopped worker resumes from its stored cursor: the server replays what it missed over
the WebSocket, no full sync, and the cache ends equal to the server's data."""

from __future__ import annotations

import httpx
import pytest

from tests.browser.extension.conftest import full_syncs, logged_requests, wait_for
from tests.support import ids
from tests.support.blocking import in_full_sync, vote, wait_until

pytestmark = pytest.mark.browser


def server_scores(server) -> dict[str, float]:
    """Every flagged video of the server with its score (``GET /api/sync/full``)."""
    full = httpx.get(f"{server.url}/api/sync/full", timeout=10).json()
    return {v["videoId"]: v["score"] for v in full["videos"]}


def cached_scores(extension) -> dict[str, float]:
    """Every video in the extension's IndexedDB with its score."""
    return {v["videoId"]: v["score"] for v in extension.idb("flagged_videos")}


def votes_logged(server, count: int) -> list[str]:
    """``count`` fresh videos voted by other users, once the server's data lists them."""
    videos = [ids.video_id() for _ in range(count)]
    for video_id in videos:
        vote(server.url, video_id)
    wait_until(lambda: in_full_sync(server.url, videos), what="the votes logged")
    return videos


def live_and_current(extension, server) -> None:
    extension.wait_status(lambda s: s["state"] == "live" and s["transport"] == "ws", what="live")
    wait_for(
        lambda: cached_scores(extension) == server_scores(server),
        what="the cache equal to the server's data",
    )


def test_a_message_starts_the_stopped_worker_and_it_resumes_by_replay(extension, api_server):
    earlier = votes_logged(api_server, 3)
    live_and_current(extension, api_server)
    syncs = full_syncs(api_server)

    extension.stop_worker()
    missed = votes_logged(api_server, 3)
    vote(api_server.url, earlier[0], category="ai_visuals")  # a change to a cached video
    wait_until(
        lambda: (
            "ai_visuals"
            in httpx.get(f"{api_server.url}/api/videos", params={"videoId": earlier[0]}).json()[
                "categories"
            ]
        ),
        what="the second vote counted",
    )
    assert not extension.worker_running()

    answer = extension.send({"type": "lookup", "videoIds": missed, "channelIds": []})

    assert extension.worker_running()
    assert set(answer["videos"]) == set(missed)
    live_and_current(extension, api_server)
    assert full_syncs(api_server) == syncs
    assert not logged_requests(api_server, "/api/sync/delta")


def test_an_alarm_starts_the_stopped_worker_and_it_resumes_by_replay(extension, api_server):
    # the watch alarm fires at most one polling period after the worker stopped
    extension.set_settings(pollMinutes=0.05)
    live_and_current(extension, api_server)
    syncs = full_syncs(api_server)

    extension.stop_worker()
    missed = votes_logged(api_server, 2)

    # no message, no page: only the alarm can start the worker again
    wait_for(extension.worker_running, timeout=30, what="the worker started by its alarm")
    wait_for(
        lambda: set(missed) <= set(cached_scores(extension)),
        timeout=30,
        what="the missed votes replayed",
    )
    live_and_current(extension, api_server)
    assert full_syncs(api_server) == syncs
