"""The fixture site as the content script sees it: opening pages, reading what each tile
shows, and making videos and channels flagged on the server the way users would.

A tile's state is what the content script wrote on it (``data-realtube``: ``hidden``,
``blurred``, ``revealed`` or ``shown``; absent while undecided); tests also check what a user
sees (Playwright's visibility) where it matters.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx

from realtube_push.domain.ids import entity_hash
from tests.support import ids
from tests.support.blocking import vote
from tests.support.servers import REPO
from tests.support.shared import run_async

SCREENSHOTS = REPO / "clients" / "extension" / "screenshots"

# Votes of fresh users (trust about 0.25 each; full confidence at a weight of 3): 7 put a
# video at a score of about 59, over the default fully_ai threshold of 50; 4 at about 34,
# in the synced dataset but under it.
FLAGGING_VOTES = 7
BELOW_THRESHOLD_VOTES = 4

Tile = tuple[str, str | None]  # (videoId, channelId)

# the outermost element of every kind of tile the fixture site renders
TILE_KINDS = (
    "ytd-rich-item-renderer, ytd-compact-video-renderer, ytd-video-renderer,"
    " ytm-shorts-lockup-view-model-v2, ytm-video-with-context-renderer"
)

_STATES = (
    """() => {
  const out = {};
  for (const tile of document.querySelectorAll('"""
    + TILE_KINDS
    + """')) {
    const link = tile.querySelector('a[href*="watch?v="], a[href*="/shorts/"]');
    const url = new URL(link.href);
    const id = url.searchParams.get('v') ?? url.pathname.split('/')[2];
    out[id] = tile.getAttribute('data-realtube');
  }
  return out;
}"""
)

_WAIT_STATES = (
    "(want) => { const got = ("
    + _STATES
    + ")(); return Object.entries(want).every(([id, state]) => got[id] === state) && got; }"
)


def home_url(site_url: str, tiles: list[Tile], *, first: int = 12, step: int = 8) -> str:
    """The fixture home grid showing ``tiles`` (``first`` at load, ``step`` per scroll)."""
    spec = ",".join(f"{v}.{c}" if c else v for v, c in tiles)
    return f"{site_url}/?{urlencode({'tiles': spec, 'first': first, 'step': step})}"


def watch_url(
    site_url: str, video_id: str, channel_id: str | None = None, related: list[Tile] = ()
) -> str:
    """The fixture watch page of ``video_id`` (with its channel and sidebar tiles)."""
    query = {"v": video_id}
    if channel_id:
        query["c"] = channel_id
    if related:
        query["related"] = ",".join(f"{v}.{c}" if c else v for v, c in related)
    return f"{site_url}/watch?{urlencode(query)}"


def states(page: Any) -> dict[str, str | None]:
    """Every tile's state, by video id."""
    return page.evaluate(_STATES)


def wait_states(page: Any, want: dict[str, str], *, timeout_ms: float = 20_000) -> dict[str, Any]:
    """Wait until each tile of ``want`` has its state (checked on every animation frame)."""
    try:
        return page.wait_for_function(_WAIT_STATES, arg=want, timeout=timeout_ms).json_value()
    except Exception as exc:
        raise AssertionError(f"tiles never reached {want}; they are {states(page)}") from exc


def tile(page: Any, video_id: str) -> Any:
    """The locator of the tile of ``video_id``."""
    return page.locator(
        f'ytd-rich-item-renderer:has(a[href="/watch?v={video_id}"]),'
        f' ytd-compact-video-renderer:has(a[href="/watch?v={video_id}"])'
    ).first


def flag_video(server_url: str, video_id: str, votes: int = FLAGGING_VOTES, **extra: Any) -> None:
    """``votes`` fully_ai votes by fresh users on ``video_id``."""
    for _ in range(votes):
        vote(server_url, video_id, **extra)


def scored_at_least(server_url: str, video_id: str, score: float) -> bool:
    """Whether the server's score of ``video_id`` has reached ``score``."""
    r = httpx.get(f"{server_url}/api/videos", params={"videoId": video_id}, timeout=10)
    return r.status_code == 200 and r.json()["score"] >= score


def make_auto_flag_channel(database_url: str, channel_id: str) -> None:
    """Give ``channel_id`` 20 videos scoring 90 and queue it: the channel worker then
    aggregates it as the real thing (score 90, auto-flag) and logs its channel delta."""

    async def seed() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO channels (channel_id, channel_hash) VALUES ($1, $2)"
                    " ON CONFLICT (channel_id) DO NOTHING",
                    channel_id,
                    entity_hash(channel_id),
                )
                for _ in range(20):
                    video_id = ids.video_id()
                    await conn.execute(
                        "INSERT INTO videos (video_id, video_hash, channel_id, score, total_votes)"
                        " VALUES ($1, $2, $3, 90, 3)",
                        video_id,
                        entity_hash(video_id),
                        channel_id,
                    )
                    await conn.execute(
                        "INSERT INTO video_categories (video_id, category, votes)"
                        " VALUES ($1, 'fully_ai', 3)",
                        video_id,
                    )
                await conn.execute(
                    "INSERT INTO channel_queue (channel_id) VALUES ($1)"
                    " ON CONFLICT (channel_id) DO UPDATE SET enqueued_at = now()",
                    channel_id,
                )
        finally:
            await conn.close()

    run_async(seed)


def screenshot_path(name: str) -> Path:
    """Where a test writes the README's screenshot ``name``: into the extension's folder
    when ``REALTUBE_SCREENSHOTS=1`` (refreshing the README's pictures), else a temporary
    folder (a test run leaves the checkout as it was: the popup's ages change each run)."""
    folder = (
        SCREENSHOTS
        if os.environ.get("REALTUBE_SCREENSHOTS") == "1"
        else Path(tempfile.gettempdir()) / "realtube-screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def tab_id(extension: Any, page: Any) -> int:
    """The extension's id of the tab showing ``page``."""
    return extension.messenger().evaluate(
        "async (url) => (await chrome.tabs.query({})).find((t) => t.url === url)?.id ?? null",
        page.url,
    )


def open_popup(extension: Any, target: Any = None) -> Any:
    """The popup, opened in a tab of its own, about the tab of ``target`` (a page) if given
    (else about the tab used before it); returns once it has rendered the worker's status."""
    from tests.browser.extension.conftest import EXTENSION_ORIGIN

    query = f"?tab={tab_id(extension, target)}" if target is not None else ""
    popup = extension.context.new_page()
    popup.set_viewport_size({"width": 348, "height": 400})
    popup.goto(f"{EXTENSION_ORIGIN}/popup/popup.html{query}")
    popup.wait_for_function(
        "() => document.body.dataset.ready === 'true'"
        " && document.getElementById('vote').dataset.ready === 'true'"
    )
    return popup
