"""Static files: the JS client at ``/client/`` and the admin dashboard at ``/admin/``.

Both are plain files of the source tree (``clients/js/`` and ``static_admin/``), served as
they are: no build step, no templating. Serving the client from the API's own origin lets a
page (the browser tests, a demo) load it and talk to the API without CORS. The dashboard's
data comes from ``/api/admin/*`` and ``/api/live/admin``, which check the admin session; the
files themselves hold nothing secret, so they are public (the page shows a login form).

Promises: only files under those two directories are served (``send_from_directory`` refuses
any path that leaves them); any other path, however absurd (too long for the file system, a
NUL, a directory), is a 404 in the API's error format; JavaScript modules always get a
JavaScript MIME type, whatever the host's ``mime.types`` says, since browsers refuse to run a
module served otherwise; an installation without the files answers 404 here and nothing
else changes. ``STATIC_ROOT`` points at a directory holding both (the container image sets
it).
"""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, redirect, send_from_directory
from werkzeug.exceptions import NotFound
from werkzeug.wrappers.response import Response as WerkzeugResponse

from realtube_push.api.openapi import answers, path_params
from realtube_push.api.responses import Page, Redirect, StaticFile
from realtube_push.web.request import services

blueprint = Blueprint("static_files", __name__)

REPO = Path(__file__).resolve().parents[2]
CLIENT = Path("clients") / "js"
ADMIN = Path("static_admin")

# The dashboard loads nothing from elsewhere and may not be framed. Inline styles stay allowed
# for the chart library (uPlot sizes its elements with style attributes).
ADMIN_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none';"
    " form-action 'self'"
)

# Suffixes whose MIME type must not depend on the host's mime.types (Quart adds the charset).
MIME_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".md": "text/plain",
    ".LICENSE": "text/plain",
}


def _root() -> Path:
    """Where ``clients/js`` and ``static_admin`` live: ``STATIC_ROOT``, else the source tree."""
    configured = services().settings.static_root
    return configured if configured is not None else REPO


async def _serve(relative: Path, filename: str) -> Response:
    """One file of ``relative`` (under the static root), revalidated on every use."""
    directory = _root() / relative
    if not directory.is_dir():  # an installation without the files: nothing to serve
        raise NotFound()
    suffix = Path(filename).suffix
    try:
        response = await send_from_directory(
            directory, filename, mimetype=MIME_TYPES.get(suffix), cache_timeout=0
        )
    except OSError as exc:  # a name the file system refuses (too long, a loop): no such file
        raise NotFound() from exc
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blueprint.get("/client/<path:filename>")
@path_params(filename={"type": "string", "description": "a path under `clients/js/`"})
@answers({200: StaticFile}, {404: "`NOT_FOUND`: no such file."})
async def client_file(filename: str) -> Response:
    """A file of the JS client (``clients/js/``): the module, its vendored deps, the demo."""
    return await _serve(CLIENT, filename)


@blueprint.get("/admin")
@answers({308: Redirect})
async def admin_redirect() -> WerkzeugResponse:
    """``/admin`` -> ``/admin/``, so the page's relative module paths resolve."""
    return redirect("/admin/", code=308)


@blueprint.get("/admin/")
@answers({200: Page}, {404: "`NOT_FOUND`: this installation has no dashboard files."})
async def admin_index() -> Response:
    """The dashboard page (it shows a login form until the admin session cookie is set)."""
    response = await _serve(ADMIN, "index.html")
    response.headers["Content-Security-Policy"] = ADMIN_CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@blueprint.get("/admin/<path:filename>")
@path_params(filename={"type": "string", "description": "a path under `static_admin/`"})
@answers({200: StaticFile}, {404: "`NOT_FOUND`: no such file."})
async def admin_file(filename: str) -> Response:
    """A file of the dashboard (``static_admin/``): scripts, styles, vendored libraries."""
    return await _serve(ADMIN, filename)
