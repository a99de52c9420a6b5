"""Live changes reach the page without a reload: votes of other users flag a visible tile,
an admin's hide restores it, a channel that starts auto-flagging hides its videos."""

from __future__ import annotations

import httpx
import pytest

from tests.browser.extension.pages import (
    BELOW_THRESHOLD_VOTES,
    FLAGGING_VOTES,
    flag_video,
    home_url,
    make_auto_flag_channel,
    scored_at_least,
    tile,
    wait_states,
)
from tests.support import ids
from tests.support.blocking import SERVER_ENV, in_full_sync, vote, wait_until

pytestmark = pytest.mark.browser

ADMIN_TOKEN = "test-admin-token-extension-0123"


@pytest.fixture
def api_server(servers):
    """The extension's server, with an admin token so a test can moderate."""
    return servers.start(**SERVER_ENV, ADMIN_TOKEN=ADMIN_TOKEN)


@pytest.fixture
def admin(api_server):
    with httpx.Client(base_url=api_server.url, timeout=10) as client:
        assert client.post("/api/admin/login", json={"token": ADMIN_TOKEN}).status_code == 200
        yield client


@pytest.fixture
def page(extension):
    extension.wait_status(lambda s: s["state"] == "live", what="the worker live")
    return extension.context.new_page()


def mark_page(page) -> None:
    """A mark that a reload would wipe."""
    page.evaluate("window.notReloaded = true")


def not_reloaded(page) -> bool:
    return page.evaluate("window.notReloaded === true")


def test_votes_of_other_users_hide_a_visible_tile_without_reload(api_server, site_server, page):
    rising, other = ids.video_id(), ids.video_id()
    flag_video(api_server.url, rising, BELOW_THRESHOLD_VOTES)
    wait_until(lambda: in_full_sync(api_server.url, [rising]), what="the score synced")
    page.goto(home_url(site_server.url, [(rising, None), (other, None)]))
    wait_states(page, {rising: "shown", other: "shown"})
    mark_page(page)

    flag_video(api_server.url, rising, FLAGGING_VOTES - BELOW_THRESHOLD_VOTES)

    wait_states(page, {rising: "hidden", other: "shown"})
    assert tile(page, rising).is_hidden()
    assert not_reloaded(page)


def test_an_admin_hiding_a_flagged_video_restores_its_tile(api_server, site_server, page, admin):
    flagged = ids.video_id()
    flag_video(api_server.url, flagged)
    wait_until(lambda: in_full_sync(api_server.url, [flagged]), what="the score synced")
    page.goto(home_url(site_server.url, [(flagged, None)]))
    wait_states(page, {flagged: "hidden"})
    mark_page(page)

    r = admin.post(f"/api/admin/videos/{flagged}/hide", json={"reason": "a human made it"})
    assert r.status_code == 200, r.text

    wait_states(page, {flagged: "shown"})  # the remove delta
    assert tile(page, flagged).is_visible()

    r = admin.post(f"/api/admin/videos/{flagged}/unhide", json={"reason": "it was AI after all"})
    assert r.status_code == 200, r.text

    wait_states(page, {flagged: "hidden"})  # back in the dataset: an update delta
    assert not_reloaded(page)


def test_a_channel_that_starts_auto_flagging_hides_its_videos_live(api_server, site_server, page):
    channel = ids.channel_id()
    by_link, by_handle, by_entry, elsewhere = (ids.video_id() for _ in range(4))
    vote(api_server.url, by_entry, channelId=channel)  # the tile does not name the channel
    wait_until(lambda: scored_at_least(api_server.url, by_entry, 1), what="the vote scored")
    wait_until(lambda: in_full_sync(api_server.url, [by_entry]), what="the score synced")
    # the fixture links even tiles by /channel/ID and odd ones by /@handle + data-channel-id
    tiles = [
        (by_link, channel),
        (by_handle, channel),
        (by_entry, None),
        (elsewhere, ids.channel_id()),
    ]
    page.goto(home_url(site_server.url, tiles))
    wait_states(page, dict.fromkeys([by_link, by_handle, by_entry, elsewhere], "shown"))
    mark_page(page)

    make_auto_flag_channel(api_server.env["DATABASE_URL"], channel)

    wait_states(
        page,
        {by_link: "hidden", by_handle: "hidden", by_entry: "hidden", elsewhere: "shown"},
        timeout_ms=30_000,  # the channel worker waits its debounce (2 s) first
    )
    assert not_reloaded(page)
