"""A running server serves the checked-in OpenAPI document, and its docs page works offline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]


async def test_the_served_document_is_the_checked_in_openapi_json(client):
    r = await client.get("/openapi.json")

    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.content == (REPO / "openapi.json").read_bytes()


async def test_the_docs_page_loads_only_files_of_this_server(client):
    r = await client.get("/docs")
    sources = re.findall(r'(?:src|href)="([^"]+)"', r.text)

    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert sources
    for source in sources:
        assert source.startswith("/"), source
        assert (await client.get(source)).status_code == 200, source


async def test_the_docs_ship_swagger_ui_with_its_licence(client):
    bundle = await client.get("/docs/swagger-ui-bundle.js")
    licence = await client.get("/docs/LICENSE")

    assert bundle.headers["Content-Type"].startswith("text/javascript")
    assert len(bundle.content) > 1_000_000
    assert "Apache License" in licence.text


async def test_an_unknown_docs_file_is_404_in_the_error_format(client):
    r = await client.get("/docs/../../pyproject.toml")
    other = await client.get("/docs/swagger-ui.js.map")

    assert r.status_code == other.status_code == 404
    assert other.json()["error"]["code"] == "NOT_FOUND"
