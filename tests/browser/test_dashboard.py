"""The admin dashboard (``static_admin/`` at ``/admin/``) in headless Chromium."""

from __future__ import annotations

import re
import threading
import time
from functools import partial
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from realtube_push.domain.ids import entity_hash
from tests.browser.jsclient import (
    open_page,
    start_client,
    wait_for_status,
)
from tests.support import ids
from tests.support.blocking import SERVER_ENV, subscribed, video, vote, wait_until
from tests.support.live import metric
from tests.support.shared import run_async

TOKEN = "dashboard-test-token-42"
pytestmark = [pytest.mark.browser, pytest.mark.server_env(**SERVER_ENV, ADMIN_TOKEN=TOKEN)]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def log_in(page, server) -> None:
    """Log in through the form and wait for the live topic and the first stats."""
    page.goto(f"{server.url}/admin/")
    page.fill("#token", TOKEN)
    page.click("#login-submit")
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    expect(page.locator("#votes-total")).not_to_have_text("–")


def test_without_the_token_the_page_shows_the_login_and_the_api_refuses(server, page):
    page.goto(f"{server.url}/admin/")

    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#dashboard")).to_be_hidden()
    for path in ("/api/admin/audit", "/api/admin/top", "/api/live/admin"):
        status, code = page.evaluate(
            "(p) => fetch(p).then(async (r) => [r.status, (await r.json()).error.code])", path
        )
        assert (status, code) == (401, "UNAUTHORIZED"), path
    page.fill("#token", "not-the-token")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_contain_text("Wrong admin token")
    expect(page.locator("#dashboard")).to_be_hidden()


def test_the_session_cookie_is_invisible_to_scripts(server, page):
    log_in(page, server)

    assert page.evaluate("document.cookie") == ""
    [cookie] = page.context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == ("rt_admin", True, "Strict")


def test_a_vote_shows_in_the_feed_within_2s_and_the_counters_move(server, page):
    log_in(page, server)
    votes_before = int(page.text_content("#votes-total").replace(",", ""))
    deltas_before = int(page.text_content("#deltas-total").replace(",", ""))
    video_id = ids.video_id()

    vote(server.url, video_id)

    expect(page.locator("#feed")).to_contain_text(video_id, timeout=2_000)
    expect(page.locator("#votes-total")).to_have_text(str(votes_before + 1), timeout=5_000)
    expect(page.locator("#deltas-total")).not_to_have_text(str(deltas_before), timeout=5_000)


def test_a_lock_from_the_dashboard_reaches_a_live_client_with_locked_true(server, page):
    video_id = ids.video_id()
    vote(server.url, video_id)
    score = wait_until(lambda: (video(server.url, video_id) or {}).get("score"))
    log_in(page, server)

    with subscribed(server.url) as live:
        page.select_option("#mod-type", "videos")
        page.fill("#mod-target", video_id)
        page.select_option("#mod-action", "lock")
        page.fill("#mod-reason", "coordinated brigading")
        page.click("#mod-submit")
        expect(page.locator("#mod-result")).to_have_attribute("data-ok", "true")
        delta = live.wait_for(lambda d: d["videoId"] == video_id and d["locked"], timeout=5)

    assert delta["score"] == score
    expect(page.locator(f'#feed li[data-id="{video_id}"] .badge.locked').first).to_be_visible()
    expect(page.locator("#audit")).to_contain_text("coordinated brigading")


def test_a_fresh_dashboard_says_what_each_empty_section_is_waiting_for(server, page):
    log_in(page, server)

    expect(page.locator("#feed-empty")).to_be_visible()
    expect(page.locator("#feed-empty")).to_contain_text("No score changes since this page opened")
    for table, says in (
        ("#top-videos", "Nothing flagged yet: no video has a score above 0 (no votes yet)."),
        ("#top-channels", "Nothing flagged yet: no channel has a score above 0."),
        ("#auto-flagged", "No channel started auto-flagging in the last 24 h"),
        ("#audit", "No moderation actions yet."),
    ):
        expect(page.locator(f"{table} td.empty")).to_contain_text(says)
    expect(page.locator("#cache-ratio")).to_have_text("no lookups yet")
    expect(page.locator("#cache-detail")).to_contain_text("votes and sync do not")
    expect(page.locator("#lag-p50")).to_have_text("no frames")
    expect(page.locator("#score-lag")).to_have_text("0 ms")
    expect(page.locator("#score-detail")).to_have_text("queue empty: every vote is in the scores")


def test_feed_lines_say_video_or_channel_and_the_legend_explains_the_badges(server, page):
    log_in(page, server)
    legend = page.locator("#feed-legend")
    for words in ("video", "channel", "locked", "auto-flag", "removed", "new score (0–100"):
        expect(legend).to_contain_text(words)
    video_id = ids.video_id()

    vote(server.url, video_id)

    line = page.locator(f'#feed li[data-id="{video_id}"]').first
    expect(line.locator(".kind")).to_have_text("video")
    expect(page.locator("#feed")).not_to_contain_text("▶")
    expect(page.locator("#feed-empty")).to_be_hidden()
    expect(page.locator("#top-videos")).to_contain_text(video_id, timeout=10_000)
    expect(page.locator("#top-videos td.empty")).to_have_count(0)


def test_cache_hit_ratio_after_cached_lookups_matches_the_server_metrics(server, page):
    video_id = ids.video_id()
    vote(server.url, video_id)
    log_in(page, server)
    expect(page.locator("#cache-ratio")).to_have_text("no lookups yet")

    # every endpoint that reads the Redis cache, each twice: the second /api/stats is a hit
    lookups = [
        ("/api/stats", {}),
        ("/api/stats", {}),
        ("/api/videos", {"videoId": video_id}),
        ("/api/videos", {"videoId": video_id}),
        (f"/api/channels/{ids.channel_id()}", {}),
        (f"/api/videos/{entity_hash(video_id)[:4]}", {}),
    ]
    for path, params in lookups:
        httpx.get(f"{server.url}{path}", params=params, timeout=10)

    count = partial(metric, server.url, "realtube_cache_requests_total")
    hits = int(run_async(partial(count, result="hit")))
    misses = int(run_async(partial(count, result="miss")))
    assert hits + misses == len(lookups), "every cached lookup is counted"
    assert hits >= 1
    expect(page.locator("#cache-detail")).to_have_text(f"hits {hits} · misses {misses} since start")
    ratio = page.locator("#cache-ratio")
    expect(ratio).to_have_text(re.compile(r"^\d+\.\d %$"))
    shown = float(ratio.inner_text().removesuffix(" %"))
    assert shown == pytest.approx(100 * hits / (hits + misses), abs=0.05)


def test_score_worker_lag_says_how_long_the_oldest_queued_video_has_waited(servers, page):
    server = servers.start(**SERVER_ENV, ADMIN_TOKEN=TOKEN, RUN_WORKERS="false")
    vote(server.url, ids.video_id())  # queued for a score worker that is not running
    log_in(page, server)

    card = page.locator("#score-card")
    expect(card.locator("h3")).to_have_text("Score worker lag")
    expect(card).to_have_attribute("title", re.compile("oldest video waiting"))
    expect(page.locator("#score-detail")).to_have_text("oldest of 1 queued video waiting")
    expect(page.locator("#score-lag")).to_have_text(re.compile(r"^[1-9][\d.]* s$"))


def test_logging_out_returns_to_the_login_form(server, page):
    log_in(page, server)

    page.click("#logout")

    expect(page.locator("#login")).to_be_visible()
    status = page.evaluate("fetch('/api/admin/session').then((r) => r.status)")
    assert status == 401


def _load(server_url: str, stop: threading.Event, *, votes: int, seconds: float) -> None:
    """Votes from a few users on a few dozen videos of four channels, and lookups of them
    (bounded in count and time)."""
    users = [ids.user_id() for _ in range(12)]
    videos = [ids.video_id() for _ in range(40)]
    categories = ["fully_ai", "ai_voiceover", "ai_visuals", "ai_thumbnails", "ai_assisted"]
    popular = [ids.video_id() for _ in range(3)]  # looked up often, voted on once
    for video_id in popular:
        vote(server_url, video_id)
    deadline = time.monotonic() + seconds
    for n in range(votes):
        if stop.is_set() or time.monotonic() > deadline:
            return
        video_id = videos[(n * 7) % len(videos)]
        vote(
            server_url,
            video_id,
            user_id=users[n % len(users)],
            category=categories[n % 3 if n % 5 else 3],
            channelId=f"UCload{n % 4}",
        )
        if n % 2:
            video(server_url, popular[n % len(popular)])  # mostly cache hits
        time.sleep(0.02)


def test_screenshot_of_the_dashboard_under_load(server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        client_page = context.new_page()  # a WebSocket client among the connections
        open_page(client_page, server.url)
        start_client(client_page)
        wait_for_status(client_page, "live", transport="ws")
        stop = threading.Event()
        load = threading.Thread(
            target=_load, args=(server.url, stop), kwargs={"votes": 600, "seconds": 60}
        )
        with subscribed(server.url), subscribed(server.url):
            log_in(page, server)
            load.start()
            try:
                page.wait_for_function(
                    "() => document.querySelectorAll('#feed li').length >= 20"
                    " && parseFloat(document.getElementById('votes-rate').textContent) > 0",
                    timeout=45_000,
                )
                expect(page.locator("#conn-detail")).to_contain_text("ws 1 · sse 2")
                # the lists re-render every few seconds while scores move: on a busy machine a
                # click can land on a row being replaced, so moderate once the load is over
                stop.set()
                load.join(timeout=30)
                page.locator("#top-videos button").first.click()  # prefills a lock
                page.fill("#mod-reason", "review: burst of votes from new accounts")
                page.click("#mod-submit")
                expect(page.locator("#audit")).to_contain_text("burst of votes")
                expect(page.locator("#cache-ratio")).to_have_text(re.compile(r"^\d+\.\d %$"))
                page.screenshot(
                    path=str(ARTIFACTS / "dashboard.png"), full_page=True, animations="disabled"
                )
            finally:
                stop.set()
                load.join(timeout=30)
    finally:
        context.close()

    assert (ARTIFACTS / "dashboard.png").stat().st_size > 20_000
