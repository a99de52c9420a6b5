"""The content script on the fixture YouTube pages: which tiles it hides, blurs or shows,
on first start, in blur mode, under infinite scroll and on the watch page."""

from __future__ import annotations

import pytest

from tests.browser.extension.pages import (
    BELOW_THRESHOLD_VOTES,
    flag_video,
    home_url,
    screenshot_path,
    states,
    tile,
    wait_states,
    watch_url,
)
from tests.support import ids
from tests.support.blocking import in_full_sync, wait_until

pytestmark = pytest.mark.browser


def live(extension) -> None:
    extension.wait_status(lambda s: s["state"] == "live", what="the worker live")


@pytest.fixture
def page(extension):
    """A tab of the extension's browser, for the fixture site."""
    return extension.context.new_page()


def test_first_start_hides_flagged_tiles_and_shows_the_others(
    extension, api_server, site_server, page
):
    flagged, below, unknown = ids.video_id(), ids.video_id(), ids.video_id()
    channel = ids.channel_id()
    flag_video(api_server.url, flagged, channelId=channel)
    flag_video(api_server.url, below, BELOW_THRESHOLD_VOTES)
    wait_until(lambda: in_full_sync(api_server.url, [flagged, below]), what="scores synced")
    live(extension)

    page.goto(home_url(site_server.url, [(flagged, channel), (below, None), (unknown, channel)]))

    wait_states(page, {flagged: "hidden", below: "shown", unknown: "shown"})
    assert tile(page, flagged).is_hidden()
    assert tile(page, below).is_visible()
    assert tile(page, unknown).is_visible()


def test_blur_mode_labels_the_tile_and_show_anyway_reveals_it(
    extension, api_server, site_server, page
):
    flagged, other = "aI9xQw3LmZk", "hN2pRt7VxYc"  # fixed: the screenshot stays the same
    flag_video(api_server.url, flagged)
    wait_until(lambda: in_full_sync(api_server.url, [flagged]), what="score synced")
    extension.set_settings(mode="blur")
    live(extension)
    page.set_viewport_size({"width": 720, "height": 420})

    page.goto(home_url(site_server.url, [(flagged, None), (other, None)]))

    wait_states(page, {flagged: "blurred", other: "shown"})
    blurred = tile(page, flagged)
    assert blurred.is_visible()
    label = blurred.locator(".realtube-overlay .realtube-label")
    assert "fully AI" in label.inner_text()
    assert tile(page, other).locator(".realtube-overlay").count() == 0
    page.screenshot(path=screenshot_path("blurred-tile.png"))

    blurred.get_by_role("button", name="Show anyway").click()

    wait_states(page, {flagged: "revealed"})
    assert blurred.locator(".realtube-overlay").count() == 0
    assert page.url.startswith(f"{site_server.url}/?")  # the click did not follow the link


def test_tiles_added_by_infinite_scroll_are_decided(extension, api_server, site_server, page):
    tiles = [(ids.video_id(), None) for _ in range(40)]
    late_flagged = [tiles[i][0] for i in (9, 23, 38)]  # past the first page of 8
    for video_id in late_flagged:
        flag_video(api_server.url, video_id)
    wait_until(lambda: in_full_sync(api_server.url, late_flagged), what="scores synced")
    live(extension)

    page.goto(home_url(site_server.url, tiles, first=8, step=8))
    wait_states(page, {tiles[0][0]: "shown"})
    while (shown := page.evaluate("window.fixtureTiles()")) < len(tiles):
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        page.wait_for_function("(n) => window.fixtureTiles() > n", arg=shown)

    want = {video_id: "shown" for video_id, _ in tiles}
    want.update({video_id: "hidden" for video_id in late_flagged})
    wait_states(page, want)


def test_watch_page_covers_a_flagged_video_and_decides_the_sidebar(
    extension, api_server, site_server, page
):
    flagged, related_flagged, related = ids.video_id(), ids.video_id(), ids.video_id()
    flag_video(api_server.url, flagged)
    flag_video(api_server.url, related_flagged)
    wait_until(
        lambda: in_full_sync(api_server.url, [flagged, related_flagged]), what="scores synced"
    )
    live(extension)

    page.goto(
        watch_url(
            site_server.url, flagged, ids.channel_id(), [(related_flagged, None), (related, None)]
        )
    )

    wait_states(page, {related_flagged: "hidden", related: "shown"})
    page.wait_for_function("() => document.documentElement.dataset.realtubeWatch === 'flagged'")
    player = page.locator("#player")
    assert "fully AI" in player.locator(".realtube-label").inner_text()
    player.get_by_role("button", name="Show anyway").click()
    page.wait_for_function("() => document.documentElement.dataset.realtubeWatch === 'revealed'")
    assert states(page)[related_flagged] == "hidden"
