"""Every kind of tile the selectors know, on the fixture's search page, and a tile element
that YouTube reuses for another video."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from tests.browser.extension.pages import flag_video, home_url, wait_states
from tests.support import ids
from tests.support.blocking import in_full_sync, wait_until

pytestmark = pytest.mark.browser


@pytest.fixture
def page(extension):
    extension.wait_status(lambda s: s["state"] == "live", what="the worker live")
    return extension.context.new_page()


def test_search_results_shorts_lockups_and_mobile_tiles_are_decided(api_server, site_server, page):
    kinds = ("results", "shorts", "lockups", "mobile")
    flagged = {kind: ids.video_id() for kind in kinds}
    plain = {kind: ids.video_id() for kind in kinds}
    for video_id in flagged.values():
        flag_video(api_server.url, video_id)
    wait_until(lambda: in_full_sync(api_server.url, list(flagged.values())), what="synced")
    query = {kind: f"{flagged[kind]},{plain[kind]}" for kind in kinds}

    page.goto(f"{site_server.url}/results?{urlencode(query)}")

    want = {video_id: "hidden" for video_id in flagged.values()}
    want.update({video_id: "shown" for video_id in plain.values()})
    wait_states(page, want)
    # a lockup inside a grid item is one tile: the outer element is decided, not the inner
    assert page.locator("yt-lockup-view-model[data-realtube]").count() == 0
    assert page.locator("#lockups > ytd-rich-item-renderer.realtube-hidden").count() == 1


def test_a_tile_reused_for_another_video_is_decided_again(api_server, site_server, page):
    flagged, plain = ids.video_id(), ids.video_id()
    flag_video(api_server.url, flagged)
    wait_until(lambda: in_full_sync(api_server.url, [flagged]), what="synced")
    page.goto(home_url(site_server.url, [(plain, None)]))
    wait_states(page, {plain: "shown"})

    page.evaluate("(id) => window.fixtureRecycle(0, id)", flagged)

    wait_states(page, {flagged: "hidden"})

    page.evaluate("(id) => window.fixtureRecycle(0, id)", plain)

    wait_states(page, {plain: "shown"})
