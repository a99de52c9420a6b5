"""``GET /api/database/export``: the newest public database export, as a download.

``?format=dump`` (default) serves ``realtube-db-YYYY-MM-DD.dump``, ``?format=csv`` the CSV
bundle. The file is chosen from a listing of ``EXPORT_DIR`` (see ``realtube_push.export``):
the request only picks one of two fixed kinds, so no part of it ever reaches a path.
Rate limited per client address (``RATE_LIMIT_EXPORT`` per hour): a dump can be large.
"""

from __future__ import annotations

import anyio
from quart import Blueprint, Response, send_file
from quart_schema import document_querystring

from realtube_push.api.limits import enforce_limit
from realtube_push.api.openapi import answers
from realtube_push.api.queries import ExportQuery, query_args
from realtube_push.api.responses import ExportFile
from realtube_push.export import ExportKind, newest_export
from realtube_push.ratelimit import Limit
from realtube_push.web.errors import ApiError
from realtube_push.web.request import client_ip, services

blueprint = Blueprint("export", __name__)

FORMATS = {"dump": ExportKind.DUMP, "csv": ExportKind.CSV}
EXPORT_WINDOW_SECONDS = 3600


@blueprint.get("/api/database/export")
@document_querystring(ExportQuery)
@answers(
    {200: ExportFile},
    {
        400: "`INVALID_PARAM`: `format` is neither `dump` nor `csv`.",
        404: "`NOT_FOUND`: no export has been written yet.",
    },
    rate_limited=True,
)
async def download() -> Response:
    """The newest export of the requested format; 404 before the first export."""
    kind = FORMATS[query_args(ExportQuery).format]
    svc = services()
    newest = await anyio.to_thread.run_sync(newest_export, svc.settings.export_dir, kind)
    if newest is None:
        raise ApiError(404, "NOT_FOUND", "No database export has been written yet")
    # Counted only when there is something to download: polling before the first export
    # must not lock a client out for an hour.
    await enforce_limit(
        "export", client_ip(), Limit(svc.settings.rate_limit_export, EXPORT_WINDOW_SECONDS)
    )
    try:
        response = await send_file(newest.path, mimetype=kind.media_type, conditional=True)
    except FileNotFoundError as exc:  # pruned between listing and opening
        raise ApiError(404, "NOT_FOUND", "No database export has been written yet") from exc
    response.headers["Content-Disposition"] = f'attachment; filename="{newest.name}"'
    return response
