"""The extension loaded unpacked in Debian's Chromium (new headless), against real servers.

Fixtures:
- ``api_server``: a real ``realtube-push serve`` on this test's database, with CORS for
  ``chrome-extension://*`` and the fixture site's origin (``SERVER_ENV``).
- ``site_server``: a static server of ``tests/browser/extension/site`` on another port
  (the YouTube-like fixture pages); ``site_server.url``.
- ``extension``: a fresh profile with the extension loaded, its settings pointed at
  ``api_server`` (``Extension``: the worker, messages as a tab sends them, worker stops,
  settings, status waits).
- ``full_syncs(server)`` / ``requests_to(server, endpoint)``: request counts from the server's
  ``/metrics`` (one process: counts restart with the process).

Playwright's sync API owns the test thread's event loop while it runs (see
``tests/browser/conftest.py``), so the Playwright instance is module-scoped, like there.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.browser import jsclient
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.support.blocking import SERVER_ENV, wait_until
from tests.support.servers import REPO, Server, free_port
from tools.extension_lib import fill

EXTENSION_DIR = REPO / "clients" / "extension"
SITE_DIR = Path(__file__).resolve().parent / "site"
# fixed by the manifest's "key" (the public key of a development key pair)
EXTENSION_ID = "moknofddnnaidaoefniemhgfjacdadgp"
EXTENSION_ORIGIN = f"chrome-extension://{EXTENSION_ID}"
# An extension page with the extension's APIs and no code of its own, for sending messages
# as a tab would (the popup would do its own asking, and wake a stopped worker).
MESSENGER_PAGE = f"{EXTENSION_ORIGIN}/manifest.json"
WAIT_MS = 20_000  # generous: two busy cores, a cold Chromium


@pytest.fixture(scope="session")
def extension_dir() -> Path:
    """The unpacked extension, with ``lib/`` filled from ``clients/js`` (as a user does)."""
    fill()
    return EXTENSION_DIR


@pytest.fixture
def api_server(servers: Any) -> Server:
    """A real server the extension may talk to (extension origin and local pages allowed)."""
    return servers.start(**SERVER_ENV)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # a quiet test server
        pass


@dataclass
class SiteServer:
    """The fixture site, served over HTTP from ``SITE_DIR`` (loopback, its own port)."""

    url: str
    httpd: http.server.ThreadingHTTPServer


@pytest.fixture
def site_server() -> Iterator[SiteServer]:
    """Static server of ``tests/browser/extension/site`` (another port than the API)."""
    SITE_DIR.mkdir(exist_ok=True)
    handler = functools.partial(_QuietHandler, directory=str(SITE_DIR))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield SiteServer(url=f"http://127.0.0.1:{httpd.server_address[1]}", httpd=httpd)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def playwright(template_database: str) -> Iterator[Any]:
    """One Playwright driver per module (after the template database, see the docstring)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@dataclass
class Extension:
    """A Chromium profile with the extension loaded, and what tests do with it."""

    context: Any
    api_url: str
    _messenger: Any = None
    _browser_cdp: Any = None
    console_errors: list[str] = field(default_factory=list)

    # -- the worker -----------------------------------------------------------------------

    def worker(self, timeout_ms: float = WAIT_MS) -> Any:
        """The extension's service worker, for ``evaluate`` (waits for it to run)."""
        wait_for(self.worker_running, timeout=timeout_ms / 1000, what="the worker to run")
        for worker in reversed(self.context.service_workers):
            if worker.url.startswith(EXTENSION_ORIGIN):
                return worker
        return self.context.wait_for_event(
            "serviceworker",
            predicate=lambda w: w.url.startswith(EXTENSION_ORIGIN),
            timeout=timeout_ms,
        )

    def worker_running(self) -> bool:
        """Whether the extension's worker runs right now, from the browser's target list
        (Playwright's ``context.service_workers`` does not notice a stopped worker)."""
        if self._browser_cdp is None:
            self._browser_cdp = self.context.browser.new_browser_cdp_session()
        targets = self._browser_cdp.send("Target.getTargets")["targetInfos"]
        return any(
            t["type"] == "service_worker" and t["url"].startswith(EXTENSION_ORIGIN) for t in targets
        )

    def stop_worker(self) -> None:
        """Stop the worker as Chrome stops an idle one (CDP ``ServiceWorker.stopAllWorkers``
        from an extension page); returns once it is gone. The next event (a message, an
        alarm) starts it again."""
        cdp = self.context.new_cdp_session(self.messenger())
        try:
            cdp.send("ServiceWorker.enable")
            cdp.send("ServiceWorker.stopAllWorkers")
        finally:
            cdp.detach()
        wait_for(lambda: not self.worker_running(), what="the worker to stop")

    # -- messages, as a tab sends them ----------------------------------------------------

    def messenger(self) -> Any:
        """An extension page (the manifest, shown in a tab) to send messages from."""
        if self._messenger is None or self._messenger.is_closed():
            page = self.context.new_page()
            page.on("pageerror", lambda exc: self.console_errors.append(str(exc)))
            page.goto(MESSENGER_PAGE)
            self._messenger = page
        return self._messenger

    def send(self, message: dict[str, Any], *, timeout_ms: float = WAIT_MS) -> Any:
        """``chrome.runtime.sendMessage(message)`` from an extension page; the answer.
        Starts a stopped worker, as a message from a content script does."""
        return self.messenger().evaluate(
            """([m, ms]) => Promise.race([
                 chrome.runtime.sendMessage(m),
                 new Promise((_, reject) =>
                   setTimeout(() => reject(new Error(`no answer to ${m.type} in ${ms} ms`)), ms)),
               ])""",
            [message, timeout_ms],
        )

    def status(self) -> dict[str, Any]:
        """The worker's ``status`` answer."""
        return self.send({"type": "status"})

    def wait_status(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 20, what: str = ""
    ) -> dict[str, Any]:
        """Poll ``status`` until ``predicate`` holds; the status that satisfied it."""
        last: list[dict[str, Any]] = []

        def check() -> bool:
            last[:] = [self.status()]
            return predicate(last[0])

        wait_for(check, timeout=timeout, interval=0.1, what=what or "status", last=last)
        return last[0]

    def idb(self, store: str, key: str | None = None) -> Any:
        """One record (``key``) or all records of a store of the worker's IndexedDB, read
        directly (an extension page shares the worker's origin)."""
        return jsclient.idb(self.messenger(), store, key)

    def user_id(self) -> str:
        """The user id the extension votes with (made on its first start)."""
        return str(
            self.messenger().evaluate(
                "async () => (await chrome.storage.local.get('identity')).identity.userId"
            )
        )

    # -- storage --------------------------------------------------------------------------

    def set_settings(self, **changes: Any) -> None:
        """Merge ``changes`` into the stored settings (as the options page saves them)."""
        self.messenger().evaluate(
            """async (changes) => {
              const { settings = {} } = await chrome.storage.local.get('settings');
              await chrome.storage.local.set({ settings: { ...settings, ...changes } });
            }""",
            changes,
        )


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 20, interval: float = 0.05, **how: Any
) -> Any:
    """``wait_until`` with the longer defaults the worker's restarts and syncs need (each
    check may be a round trip into the browser)."""
    return wait_until(condition, timeout=timeout, interval=interval, **how)


def launch(playwright: Any, extension_dir: Path, profile: Path) -> Any:
    """A persistent context with the extension loaded unpacked (new headless mode)."""
    context = playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        headless=True,
        args=[
            *CHROMIUM_ARGS,
            f"--disable-extensions-except={extension_dir}",
            f"--load-extension={extension_dir}",
        ],
    )
    context.set_default_timeout(WAIT_MS)
    return context


@pytest.fixture
def extension_profile() -> Iterator[Path]:
    """A fresh, empty Chromium profile directory."""
    profile = Path(tempfile.mkdtemp(prefix="rt-ext-profile-"))
    try:
        yield profile
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def extension(
    playwright: Any, extension_dir: Path, extension_profile: Path, api_server: Server
) -> Iterator[Extension]:
    """The extension in a fresh profile, its settings pointed at ``api_server``."""
    context = launch(playwright, extension_dir, extension_profile)
    ext = Extension(context=context, api_url=api_server.url)
    try:
        ext.worker()  # installed and started
        ext.set_settings(apiBase=api_server.url)
        yield ext
    finally:
        context.close()


def requests_to(server: Server, endpoint: str, method: str = "GET") -> int:
    """How many ``method endpoint`` requests ``server``'s process answered (any status),
    from its ``/metrics`` (counts restart with the process)."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "realtube_http_requests":
            continue
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name.endswith("_total")
                and labels.get("endpoint") == endpoint
                and labels.get("method") == method
            ):
                total += sample.value
    return int(total)


def logged_requests(server: Server, path: str, *, identified: bool = True) -> list[dict[str, Any]]:
    """Requests to ``path`` in ``server``'s request log; with ``identified``, only those that
    carried an ``X-User-ID`` (the extension's sync requests do; a test's own checks do not)."""
    found = []
    for line in server.log().splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") != "request" or entry.get("path", "").split("?")[0] != path:
            continue
        if identified and not entry.get("user_id_prefix"):
            continue
        found.append(entry)
    return found


def full_syncs(server: Server) -> int:
    """``GET /api/sync/full`` requests of the extension that ``server`` answered."""
    return len(logged_requests(server, "/api/sync/full"))
