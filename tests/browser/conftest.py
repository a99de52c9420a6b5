"""Browser fixtures: Debian's Chromium driven by Playwright (sync API), against real servers.

The Playwright browser download does not work on our machines, so the browser is the system
one (``apt-get install chromium``). Without it every browser test is skipped with the reason.

Playwright's sync API keeps an event loop running in the test thread, so nothing here may call
``anyio.run`` in that thread: SQL checks go through ``tests.support.shared.run_async``, which
runs the coroutine in a worker thread of its own (the suite's ``database_url`` does the same).
Each test gets a server of its own (``server`` below), since a page shows what the whole
database holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fixtures import server_env
from tests.support.servers import Server, ServerFactory

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def server(request: pytest.FixtureRequest, servers: ServerFactory) -> Server:
    """A server of this test's own, on its own database (a page shows what the whole database
    holds), with the settings of the closest ``server_env`` marker."""
    return servers.start(**server_env(request))


@pytest.fixture(scope="module")
def browser(template_database) -> Iterator[object]:
    """One headless Chromium per test module (each test gets its own context).

    Module scope, not session: while Playwright runs, its event loop occupies the test
    thread, and the async tests of other directories need that thread's loop slot back.
    Depends on ``template_database`` so that fixture's ``anyio.run`` happens before.
    """
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def context(browser):
    """A fresh browser profile (own IndexedDB, cookies) for one test."""
    context = browser.new_context()
    context.set_default_timeout(15_000)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(context):
    """A page whose console errors are kept (``page.console_errors``) for failure messages."""
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.console_errors = errors
    return page
