"""``GET /``: a person who opens the server's address finds where to go."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.shared import module_servers

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server(stack, template_database):
    with module_servers(stack, template_database) as factory:
        yield factory.start()


@pytest.fixture
async def client(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


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
