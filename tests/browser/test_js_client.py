"""The extension's JS client (``clients/js/realtube-live.js``) in headless Chromium.

Each test starts a real server on a fresh database, loads the client from that server
(``/client/``, same origin as the API) and checks what ends up in IndexedDB.
"""

from __future__ import annotations

import time
from urllib.parse import urlparse

import httpx
import pytest

from realtube_push.domain.ids import entity_hash
from tests.browser.jsclient import (
    idb,
    ids_sharing_prefix,
    open_page,
    seen,
    start_client,
    wait_for_js,
    wait_for_status,
    wait_for_video,
)
from tests.support import ids, pg
from tests.support.blocking import SERVER_ENV, in_full_sync, video, vote, wait_until
from tests.support.shared import run_async

pytestmark = [pytest.mark.browser, pytest.mark.server_env(**SERVER_ENV)]


def voted_videos(server, count: int) -> list[str]:
    """``count`` fresh voted videos, once the full sync lists them."""
    videos = [ids.video_id() for _ in range(count)]
    for video_id in videos:
        vote(server.url, video_id)
    wait_until(lambda: in_full_sync(server.url, videos), what="videos in the full sync")
    return videos


def requests_to(page, path_prefix: str) -> list:
    """Every request the page makes from now on whose path starts with ``path_prefix``."""
    seen_requests: list = []
    page.on(
        "request",
        lambda r: seen_requests.append(r) if urlparse(r.url).path.startswith(path_prefix) else None,
    )
    return seen_requests


def block_websocket(page) -> None:
    """Every WebSocket to the live endpoint is closed before the server is reached."""
    page.route_web_socket("**/api/live/ws", lambda ws: ws.close())


def test_first_run_fills_indexeddb_from_the_full_sync(server, page):
    videos = voted_videos(server, 5)
    full_syncs = requests_to(page, "/api/sync/full")
    open_page(page, server.url)

    start_client(page)

    stored = {v["videoId"]: v for v in idb(page, "flagged_videos")}
    assert set(stored) == set(videos)
    assert stored[videos[0]]["score"] > 0
    assert set(stored[videos[0]]["categories"]) == {"fully_ai"}
    full = httpx.get(f"{server.url}/api/sync/full").json()
    cursor = idb(page, "sync_state", "cursor")
    assert (cursor["epoch"], cursor["seq"]) == (full["epoch"], full["cursor"])
    assert len(full_syncs) == 1


def test_vote_by_another_client_reaches_indexeddb_within_a_second_over_websocket(server, page):
    open_page(page, server.url)
    start_client(page)
    wait_for_status(page, "live", transport="ws")
    video_id = ids.video_id()

    cast = time.time()
    vote(server.url, video_id)
    stored = wait_for_video(page, video_id, timeout_ms=5_000)

    applied = seen(page, video_id)[0]
    assert applied["source"] == "ws"
    assert applied["at"] / 1000 - cast < 1.0
    assert stored["score"] > 0


def test_with_websocket_blocked_the_client_gets_votes_over_sse(server, page):
    block_websocket(page)
    open_page(page, server.url)
    start_client(page)
    wait_for_status(page, "live", transport="sse")
    video_id = ids.video_id()

    cast = time.time()
    vote(server.url, video_id)
    wait_for_video(page, video_id, timeout_ms=5_000)

    applied = seen(page, video_id)[0]
    assert applied["source"] == "sse"
    assert applied["at"] / 1000 - cast < 1.0


def test_with_websocket_and_sse_blocked_the_client_polls_deltas(server, page):
    block_websocket(page)
    page.route("**/api/live/sse**", lambda route: route.abort())
    polls = requests_to(page, "/api/sync/delta")
    open_page(page, server.url)
    start_client(page, deltaIntervalMs=300)
    wait_for_status(page, "polling", transport="poll")
    video_id = ids.video_id()

    vote(server.url, video_id)
    wait_for_video(page, video_id, timeout_ms=10_000)

    assert seen(page, video_id)[0]["source"] == "poll"
    assert all("cursor=" in r.url and "epoch=" in r.url for r in polls)


def test_a_reload_resumes_from_the_stored_cursor_without_a_full_sync(server, page):
    before = voted_videos(server, 2)
    open_page(page, server.url)
    start_client(page)
    wait_for_status(page, "live", transport="ws")
    full_syncs = requests_to(page, "/api/sync/full")

    page.reload()  # the client goes away with the page; a change happens meanwhile
    missed = ids.video_id()
    vote(server.url, missed)
    wait_until(lambda: in_full_sync(server.url, [missed]), what="the missed vote logged")
    page.wait_for_function("() => window.RealTubeLive !== undefined")
    start_client(page)
    wait_for_video(page, missed)

    assert full_syncs == []
    assert seen(page, missed)[0]["source"] == "ws"
    assert set(before) | {missed} == {v["videoId"] for v in idb(page, "flagged_videos")}


def test_a_vote_cast_while_the_server_is_down_is_queued_and_sent_when_it_returns(
    servers, server, page
):
    user = ids.user_id()
    open_page(page, server.url)
    start_client(page, userId=user)
    wait_for_status(page, "live", transport="ws")
    server.terminate()
    wait_for_js(page, "() => window.client.status.state !== 'live'")
    video_id = ids.video_id()

    outcome = page.evaluate("(v) => window.client.vote(v, 'ai_visuals')", video_id)

    assert outcome == {"queued": True}
    [queued] = idb(page, "pending_votes")
    assert (queued["videoId"], queued["category"]) == (video_id, "ai_visuals")
    restarted = servers.start(port=server.port, **SERVER_ENV)
    event = wait_for_js(page, "(v) => window.voteEvents.find((e) => e.videoId === v)", arg=video_id)
    assert event["applied"] is True
    assert idb(page, "pending_votes") == []
    assert video(restarted.url, video_id)["categories"]["ai_visuals"]["votes"] == 1
    cast_at = run_async(
        pg.fetchval,
        restarted.env["DATABASE_URL"],
        "SELECT cast_at FROM votes WHERE video_id = $1 AND user_id = $2",
        video_id,
        user,
    )
    assert abs(cast_at.timestamp() * 1000 - queued["timestamp"]) < 1


def test_an_older_queued_vote_does_not_override_a_newer_one(servers, server, page):
    user = ids.user_id()
    open_page(page, server.url)
    start_client(page, userId=user)
    wait_for_status(page, "live", transport="ws")
    server.terminate()
    wait_for_js(page, "() => window.client.status.state !== 'live'")
    video_id = ids.video_id()
    # this device stays cut off from the vote endpoint until the user voted elsewhere
    page.route("**/api/votes", lambda route: route.abort())
    assert page.evaluate("(v) => window.client.vote(v, 'ai_voiceover')", video_id)["queued"]

    restarted = servers.start(port=server.port, **SERVER_ENV)
    newer = vote(restarted.url, video_id, user_id=user, category="fully_ai")
    page.unroute("**/api/votes")
    event = wait_for_js(page, "(v) => window.voteEvents.find((e) => e.videoId === v)", arg=video_id)

    assert newer["applied"] is True
    assert event["applied"] is False
    assert idb(page, "pending_votes") == []
    assert set(video(restarted.url, video_id)["categories"]) == {"fully_ai"}


def test_cache_misses_are_looked_up_by_hash_prefix_several_ids_per_request(server, page):
    open_page(page, server.url)
    # no live channel and no poll due: votes after the full sync stay unknown locally
    start_client(page, transports=["poll"], deltaIntervalMs=3_600_000)
    first, second, unknown = ids_sharing_prefix(3)
    for video_id in (first, second):
        vote(server.url, video_id)
    wait_until(lambda: all((video(server.url, v) or {}).get("score") for v in (first, second)))
    lookups = requests_to(page, "/api/videos")

    found = page.evaluate(
        "async (ids) => Object.fromEntries(await window.client.lookup(ids, {remote: 'always'}))",
        [first, second, unknown],
    )

    assert found[first]["videoId"] == first
    assert found[second]["videoId"] == second
    assert found[unknown] is None
    assert len(lookups) == 1
    assert urlparse(lookups[0].url).path == f"/api/videos/{entity_hash(first)[:4]}"
    assert "x-user-id" not in lookups[0].headers
    assert idb(page, "flagged_videos", first)["videoId"] == first


def test_a_resync_answer_makes_the_client_full_sync_and_go_on_live(servers, server, page):
    open_page(page, server.url)
    start_client(page)
    wait_for_status(page, "live", transport="ws")
    server.terminate()
    # the log was reset (say, restored from a backup): the client's cursor means nothing now
    run_async(pg.execute, server.env["DATABASE_URL"], "UPDATE sync_meta SET epoch = 'restored'")
    full_syncs = requests_to(page, "/api/sync/full")

    restarted = servers.start(port=server.port, **SERVER_ENV)
    # the client comes back on its own backoff (up to 60 s after failed tries while the server
    # was down), waits the resync's delay, then full-syncs: far more than a default wait
    wait_for_js(page, "() => window.client.syncState.epoch === 'restored'", timeout_ms=120_000)
    # on whichever transport answered first once the server was back: which one that is
    # depends on how long the restart took, measured against the client's retry schedule
    wait_for_status(page, "live")
    video_id = ids.video_id()
    vote(restarted.url, video_id)

    wait_for_video(page, video_id)
    assert full_syncs
    assert idb(page, "sync_state", "cursor")["epoch"] == "restored"


def test_refresh_catches_up_on_demand_through_the_delta_api(server, page):
    open_page(page, server.url)
    start_client(page, transports=["poll"], deltaIntervalMs=3_600_000)  # nothing on its own
    video_id = ids.video_id()
    vote(server.url, video_id)
    wait_until(lambda: in_full_sync(server.url, [video_id]), what="the vote logged")

    outcome = page.evaluate("window.client.refresh()")

    assert outcome == {"applied": 1, "full": False}
    assert idb(page, "flagged_videos", video_id)["videoId"] == video_id
    assert seen(page, video_id)[0]["source"] == "poll"


def test_the_full_sync_repeats_every_full_sync_interval(server, page):
    full_syncs = requests_to(page, "/api/sync/full")
    open_page(page, server.url)

    start_client(page, fullSyncIntervalMs=1_000)

    for _ in range(2):
        last = page.evaluate("window.client.syncState.fullSyncAt")
        wait_for_js(page, "(t) => window.client.syncState.fullSyncAt > t", arg=last)
    assert len(full_syncs) >= 3
    # revalidated: an unchanged dataset is not downloaded again
    assert all(r.headers.get("if-none-match") for r in full_syncs[1:])


def test_reconnect_delays_grow_exponentially_with_full_jitter(server, page):
    open_page(page, server.url)

    caps = page.evaluate(
        """async () => {
            const { backoffDelay } = await import('/client/realtube-live.js');
            return [0, 1, 2, 3, 10].map((attempt) => {
                const delay = () => backoffDelay(attempt, 500, 60000);
                const samples = Array.from({ length: 2000 }, delay);
                return [Math.min(...samples), Math.max(...samples)];
            });
        }"""
    )

    for (low, high), cap in zip(caps, [500, 1000, 2000, 4000, 60000], strict=True):
        assert 0 <= low < cap * 0.05  # full jitter: anywhere from 0 ...
        assert cap * 0.95 < high <= cap  # ... up to the exponential cap
