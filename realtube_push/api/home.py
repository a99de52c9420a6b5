"""``GET /``: a small page that says what this server is and where to go from here.

A person who opens the server's address in a browser finds the API documentation, the
OpenAPI document, the admin dashboard and the health checks, instead of a JSON 404. The page
is plain HTML: no script, no style, nothing loaded from anywhere.
"""

from __future__ import annotations

from quart import Blueprint, Response

from realtube_push import __version__
from realtube_push.api.openapi import answers
from realtube_push.api.responses import Page

blueprint = Blueprint("home", __name__)

LINKS = (
    ("/docs", "API documentation", "every route, tried in the browser (Swagger UI)"),
    ("/openapi.json", "OpenAPI document", "the machine-readable API description"),
    ("/admin/", "Admin dashboard", "live statistics and moderation (admin token required)"),
    ("/health/ready", "Readiness", "database, cache, workers and live channel"),
    ("/health/live", "Liveness", "the process answers"),
    ("/metrics", "Metrics", "Prometheus text"),
)

CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"


def page() -> str:
    """The landing page's HTML."""
    items = "\n".join(
        f'    <li><a href="{href}">{title}</a> <code>{href}</code>: {what}</li>'
        for href, title, what in LINKS
    )
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>RealTube push</title>
</head>
<body>
  <h1>RealTube push</h1>
  <p>The server behind the RealTube browser extension: community votes on AI-generated
  videos, scores, and a live channel that keeps every extension's cache in step.
  Version {__version__}.</p>
  <ul>
{items}
  </ul>
</body>
</html>
"""


@blueprint.get("/")
@answers({200: Page})
async def home() -> Response:
    """This server's landing page: links to the API docs, the dashboard and health."""
    return Response(
        page(),
        content_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"},
    )
