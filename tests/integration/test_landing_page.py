"""``GET /``: a person who opens the server's address finds where to go."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.anyio


async def test_the_root_is_a_page_not_a_json_404(client):
    r = await client.get("/")

    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert "RealTube push" in r.text


async def test_the_root_links_to_the_api_docs_the_dashboard_and_health(client):
    links = re.findall(r'href="([^"]+)"', (await client.get("/")).text)

    assert {"/docs", "/admin/", "/health/ready"} <= set(links)
    for link in links:
        assert (await client.get(link)).status_code == 200, link
