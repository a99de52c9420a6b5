"""``/openapi.json`` and ``/docs``: the API's OpenAPI document and Swagger UI on it.

Swagger UI is vendored in ``docs_ui/`` (pinned, with its licence; see its README) and served
from the package, so the page works offline and loads nothing from elsewhere (a strict
Content-Security-Policy says so to the browser). Only the page's own files are served, by
name; these routes are not part of the document they serve.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from quart import Blueprint, Response, current_app
from quart_schema import hide
from werkzeug.exceptions import NotFound

from realtube_push.api import openapi

blueprint = Blueprint("docs", __name__)

VERSION: Final = "5.35.0"
CACHE_KEY: Final = "realtube_openapi_json"
ASSETS: Final = Path(__file__).resolve().parent / "docs_ui"
# public name -> (file in docs_ui/, media type)
FILES: Final = {
    "swagger-ui-bundle.js": (f"swagger-ui-{VERSION}-bundle.js", "text/javascript"),
    "swagger-ui.css": (f"swagger-ui-{VERSION}.css", "text/css"),
    "init.js": ("init.js", "text/javascript"),
    "LICENSE": (f"swagger-ui-{VERSION}.LICENSE", "text/plain"),
    "NOTICE": (f"swagger-ui-{VERSION}.NOTICE", "text/plain"),
}
# Swagger UI sizes and colours its elements with style attributes, and shows data: images.
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none';"
    " form-action 'none'"
)


def _file(name: str, media_type: str) -> Response:
    response = Response((ASSETS / name).read_bytes(), content_type=f"{media_type}; charset=utf-8")
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blueprint.get("/openapi.json")
@hide
async def document() -> Response:
    """The OpenAPI document, byte for byte what ``tools/openapi.py`` writes."""
    body: bytes | None = current_app.extensions.get(CACHE_KEY)
    if body is None:  # built once: the routes do not change while the app runs
        body = openapi.render(openapi.document(current_app))
        current_app.extensions[CACHE_KEY] = body
    return Response(body, content_type="application/json")


@blueprint.get("/docs")
@hide
async def page() -> Response:
    """Swagger UI on ``/openapi.json``."""
    response = _file("docs.html", "text/html")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    return response


@blueprint.get("/docs/<name>")
@hide
async def asset(name: str) -> Response:
    """One of the page's files (Swagger UI, its licence, the start script)."""
    if name not in FILES:
        raise NotFound()
    return _file(*FILES[name])
