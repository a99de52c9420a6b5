"""The popup: the worker's status in plain words, and whether there is a video to vote on."""

from __future__ import annotations

import pytest

from tests.browser.extension.conftest import EXTENSION_ORIGIN
from tests.browser.extension.pages import (
    flag_video,
    home_url,
    open_popup,
    screenshot_path,
    watch_url,
)
from tests.support import ids
from tests.support.blocking import SERVER_ENV, in_full_sync, wait_until
from tests.support.servers import free_port

pytestmark = pytest.mark.browser


def test_popup_says_live_and_offers_a_vote_on_the_open_video(extension, api_server, site_server):
    flagged = "aI9xQw3LmZk"  # fixed: the screenshot stays the same
    flag_video(api_server.url, flagged)
    wait_until(lambda: in_full_sync(api_server.url, [flagged]), what="the score synced")
    extension.wait_status(lambda s: s["state"] == "live" and s["cachedVideos"] == 1, what="live")
    video = extension.context.new_page()
    video.goto(watch_url(site_server.url, flagged, ids.channel_id()))

    popup = open_popup(extension, video)

    assert popup.locator("#state").inner_text() == "Live"
    assert popup.locator("#transport").inner_text() == "live over a WebSocket"
    assert popup.locator("#cached").inner_text() == "1"
    assert popup.locator("#pending").inner_text() == "none"
    assert popup.locator("#problem").is_hidden()
    assert popup.locator("#vote-form").is_visible()
    assert flagged in popup.locator("#video").inner_text()
    popup.locator("body").screenshot(path=screenshot_path("popup.png"))

    flag_video(api_server.url, ids.video_id())  # another video flagged while it is open

    popup.wait_for_function("() => document.getElementById('cached').textContent === '2'")
    assert popup.locator("#last-delta").inner_text().endswith(" s ago")


def test_popup_on_a_page_without_a_video_says_so(extension, site_server):
    home = extension.context.new_page()
    home.goto(home_url(site_server.url, [(ids.video_id(), None)]))

    popup = open_popup(extension, home)

    assert popup.locator("#no-video").is_visible()
    assert "not a YouTube video" in popup.locator("#no-video").inner_text()
    assert popup.locator("#vote-form").is_hidden()


def test_an_api_url_that_is_not_a_url_is_explained(extension):
    extension.set_settings(apiBase="not a url")
    extension.wait_status(lambda s: s["state"] == "error", what="the worker refusing the URL")

    popup = open_popup(extension)

    assert popup.locator("#state").inner_text() == "Not running"
    assert "http:// or https://" in popup.locator("#problem").inner_text()


def test_an_unreachable_server_is_explained_with_the_next_try(extension):
    nobody = f"http://127.0.0.1:{free_port()}"
    extension.set_settings(apiBase=nobody)
    status = extension.wait_status(
        lambda s: s["lastError"] is not None and s["nextRetryAt"] is not None,
        what="a failed attempt and the next one planned",
    )
    assert status["state"] != "live"

    popup = open_popup(extension)

    problem = popup.locator("#problem").inner_text()
    assert problem.startswith(f"Cannot reach the server at {nobody}"), problem
    # between two attempts (the popup follows the worker's status as it changes)
    popup.wait_for_function(
        "() => document.getElementById('retry').textContent.startsWith('Next try')",
        timeout=90_000,
    )


def test_a_server_refusing_the_extension_origin_is_explained_while_sse_serves(extension, servers):
    # Only the WebSocket handshake carries the extension's Origin (and is refused with 403,
    # which browsers do not show to scripts); Chrome sends no Origin with the requests of an
    # extension that holds host permissions for the server, so SSE and REST still work.
    refusing = servers.start(**{**SERVER_ENV, "CORS_ORIGINS": "http://127.0.0.1:*"})
    extension.set_settings(apiBase=refusing.url)
    extension.wait_status(
        lambda s: s["state"] == "live" and s["transport"] == "sse", what="live over SSE"
    )

    popup = open_popup(extension)

    assert popup.locator("#state").inner_text() == "Live"
    assert popup.locator("#transport").inner_text() == "live over server-sent events"
    problem = popup.locator("#problem")
    assert problem.get_attribute("data-severity") == "note"
    assert "The WebSocket to" in problem.inner_text()
    assert f"add {EXTENSION_ORIGIN} to its CORS_ORIGINS" in problem.inner_text()
    assert popup.locator("#retry").inner_text().startswith("The WebSocket is tried again in ")
