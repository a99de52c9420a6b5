"""Voting from the popup on the video of the current tab, through the worker's offline queue."""

from __future__ import annotations

import httpx
import pytest

from tests.browser.extension.pages import open_popup, watch_url
from tests.support import ids
from tests.support.blocking import SERVER_ENV, wait_until

pytestmark = pytest.mark.browser


def server_video(server_url: str, video_id: str) -> dict | None:
    r = httpx.get(f"{server_url}/api/videos", params={"videoId": video_id}, timeout=10)
    return r.json() if r.status_code == 200 else None


def test_a_vote_from_the_popup_is_counted(extension, api_server, site_server):
    extension.wait_status(lambda s: s["state"] == "live", what="the worker live")
    video_id, channel = ids.video_id(), ids.channel_id()
    video = extension.context.new_page()
    video.goto(watch_url(site_server.url, video_id, channel))
    popup = open_popup(extension, video)

    popup.select_option("#category", "ai_voiceover")
    popup.get_by_role("button", name="Vote").click()

    popup.wait_for_function(
        "() => document.getElementById('vote-result').dataset.outcome === 'sent'"
    )
    assert popup.locator("#vote-result").inner_text().startswith("Vote counted.")
    stored = wait_until(lambda: server_video(api_server.url, video_id), what="the vote stored")
    assert set(stored["categories"]) == {"ai_voiceover"}
    assert stored["channelId"] == channel


def test_a_vote_while_the_server_is_down_waits_in_the_queue(
    extension, api_server, site_server, servers
):
    extension.wait_status(lambda s: s["state"] == "live", what="the worker live")
    video_id = ids.video_id()
    video = extension.context.new_page()
    video.goto(watch_url(site_server.url, video_id))
    api_server.terminate()
    extension.wait_status(lambda s: s["state"] != "live", what="the worker noticing")
    popup = open_popup(extension, video)

    popup.get_by_role("button", name="Vote").click()

    popup.wait_for_function(
        "() => document.getElementById('vote-result').dataset.outcome === 'queued'"
    )
    assert "saved" in popup.locator("#vote-result").inner_text()
    popup.wait_for_function("() => document.getElementById('pending').textContent.startsWith('1 ')")

    back = servers.start(port=api_server.port, **SERVER_ENV)
    wait_until(
        lambda: server_video(back.url, video_id) is not None,
        timeout=120,  # the worker's vote retry backs off (up to a minute)
        what="the queued vote delivered",
    )
