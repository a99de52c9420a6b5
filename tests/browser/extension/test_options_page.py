"""The options page: defaults shown, invalid input refused next to its field, valid input
saved and applied to open pages at once."""

from __future__ import annotations

import pytest

from tests.browser.extension.conftest import EXTENSION_ORIGIN
from tests.browser.extension.pages import flag_video, home_url, tile, wait_states
from tests.support import ids
from tests.support.blocking import in_full_sync, wait_until

pytestmark = pytest.mark.browser

OPTIONS = f"{EXTENSION_ORIGIN}/options/options.html"


@pytest.fixture
def options(extension):
    page = extension.context.new_page()
    page.goto(OPTIONS)
    page.wait_for_function("() => document.body.dataset.ready === 'true'")
    return page


def stored(extension) -> dict:
    return extension.messenger().evaluate(
        "async () => (await chrome.storage.local.get('settings')).settings"
    )


def test_the_form_shows_the_stored_settings_and_defaults(extension, api_server, options):
    assert options.locator("#apiBase").input_value() == api_server.url
    thresholds = {
        c: options.locator(f'[id="thresholds.{c}"]').input_value()
        for c in ("fully_ai", "ai_voiceover", "ai_visuals", "ai_thumbnails", "ai_assisted")
    }
    assert thresholds == {
        "fully_ai": "50",
        "ai_voiceover": "60",
        "ai_visuals": "60",
        "ai_thumbnails": "70",
        "ai_assisted": "80",
    }
    assert options.locator('input[name="mode"][value="hide"]').is_checked()
    assert options.locator("#live").is_checked()
    assert options.locator("#pollMinutes").input_value() == "30"


def test_invalid_input_is_explained_next_to_each_field_and_not_saved(extension, options):
    before = stored(extension)
    options.fill("#apiBase", "not a url")
    options.fill('[id="thresholds.fully_ai"]', "150")
    options.fill("#pollMinutes", "")

    options.get_by_role("button", name="Save").click()

    options.wait_for_function("() => document.getElementById('error-apiBase').textContent !== ''")
    assert "http://" in options.locator("#error-apiBase").inner_text()
    assert "0 to 100" in options.locator('[id="error-thresholds.fully_ai"]').inner_text()
    assert "minutes" in options.locator("#error-pollMinutes").inner_text()
    assert options.locator('[id="error-thresholds.ai_visuals"]').inner_text() == ""
    assert options.locator("#apiBase").get_attribute("aria-invalid") == "true"
    assert options.locator("#saved").inner_text() == ""
    assert stored(extension) == before

    options.fill("#apiBase", "http://127.0.0.1:9")  # fixing a field clears its message
    assert options.locator("#error-apiBase").inner_text() == ""


def test_saved_settings_apply_to_an_open_page_without_reload(
    extension, api_server, site_server, options
):
    flagged = ids.video_id()
    flag_video(api_server.url, flagged)  # scores about 59 in fully_ai
    wait_until(lambda: in_full_sync(api_server.url, [flagged]), what="the score synced")
    extension.wait_status(lambda s: s["state"] == "live", what="the worker live")
    page = extension.context.new_page()
    page.goto(home_url(site_server.url, [(flagged, None)]))
    wait_states(page, {flagged: "hidden"})

    options.check('input[name="mode"][value="blur"]')
    options.get_by_role("button", name="Save").click()

    options.wait_for_function("() => document.getElementById('saved').textContent === 'Saved.'")
    assert stored(extension)["mode"] == "blur"
    wait_states(page, {flagged: "blurred"})
    assert tile(page, flagged).is_visible()

    options.fill('[id="thresholds.fully_ai"]', "75")
    options.get_by_role("button", name="Save").click()

    wait_states(page, {flagged: "shown"})
    assert stored(extension)["thresholds"]["fully_ai"] == 75
