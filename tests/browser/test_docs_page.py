"""``/docs`` in headless Chromium with every outside request blocked: Swagger UI shows every
operation of the document (issue: the page was blank offline, Swagger UI came from a CDN)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]


def test_the_docs_page_shows_every_operation_offline(server, page):
    outside: list[str] = []

    def only_this_server(route) -> None:
        if urlsplit(route.request.url).netloc == urlsplit(server.url).netloc:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    document = json.loads((REPO / "openapi.json").read_text())
    operations = sum(len(item) for item in document["paths"].values())

    page.goto(f"{server.url}/docs")

    expect(page.locator(".opblock")).to_have_count(operations, timeout=20_000)
    expect(page.locator(".info .title")).to_contain_text("RealTube push API")
    assert outside == []
    assert page.console_errors == []
