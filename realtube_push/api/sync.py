"""``GET /api/sync/delta`` and ``GET /api/sync/full``: the polling side of the sync log.

Cursor mode (``?cursor=<seq>&epoch=<epoch>``) is gap-free: a page holds every change with
``cursor < seq <= page cursor``, conflated to the latest per video/channel, so applying pages
in order reproduces the server's dataset exactly. Time mode (``?since=``) serves clients that
poll by time (docs/api.md).
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
import orjson
from quart import Blueprint, Response, request
from quart_schema import document_headers, document_querystring

from realtube_push.api.limits import enforce_limit
from realtube_push.api.openapi import answers
from realtube_push.api.queries import FullSyncHeaders, SyncDeltaQuery, SyncHeaders, query_args
from realtube_push.api.responses import NotModified, SyncDeltaOut, SyncFullOut
from realtube_push.domain.ids import is_user_id
from realtube_push.domain.views import iso
from realtube_push.ratelimit import Limit
from realtube_push.store import synclog
from realtube_push.store.synclog import LoggedDelta
from realtube_push.web.request import client_ip, services

blueprint = Blueprint("sync", __name__)

DELTA_PAGE = 5_000
SINCE_OVERLAP = timedelta(seconds=10)
MSGPACK = "application/msgpack"


async def _limit() -> None:
    """Per user (``X-User-ID``, else the address), and a ceiling per address that a fresh
    ``X-User-ID`` on every request cannot get around."""
    settings = services().settings
    user = request.headers.get("X-User-ID", "")
    who = f"u:{user}" if is_user_id(user) else f"ip:{client_ip()}"
    await enforce_limit("sync", who, Limit(settings.rate_limit_sync))
    await enforce_limit("sync-ip", client_ip(), Limit(settings.rate_limit_sync_per_ip))


def _wants_msgpack() -> bool:
    return request.accept_mimetypes.best_match(["application/json", MSGPACK]) == MSGPACK


def _respond(body: dict[str, Any]) -> Response:
    if _wants_msgpack():
        return Response(msgpack.packb(body), content_type=MSGPACK)
    return Response(orjson.dumps(body), content_type="application/json")


def conflate(deltas: list[LoggedDelta]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Latest delta per video and per channel, in seq order, each carrying its seq."""
    latest: dict[tuple[str, str], LoggedDelta] = {}
    for delta in deltas:
        latest[(delta.kind, delta.entity_id)] = delta
    ordered = sorted(latest.values(), key=lambda d: d.seq)
    videos = [{**d.payload, "seq": d.seq} for d in ordered if d.kind == "video"]
    channels = [{**d.payload, "seq": d.seq} for d in ordered if d.kind == "channel"]
    return videos, channels


@blueprint.get("/api/sync/delta")
@document_querystring(SyncDeltaQuery)
@document_headers(SyncHeaders)
@answers(
    {200: SyncDeltaOut},
    {
        400: "`MISSING_PARAM`: neither `cursor` nor `since`; `INVALID_PARAM`: `cursor` not a "
        "non-negative integer, `since` not RFC 3339 or more than a minute ahead.",
    },
    rate_limited=True,
)
async def delta() -> Response:
    """Changes after a cursor (gap-free) or since a time.

    With ``cursor`` (and ``epoch``): every change with a higher seq, latest per video and
    channel, 5,000 log entries a page (``hasMore``); ``resync: true`` when the cursor cannot
    be served (do a full sync). With ``since``: the changes logged since that time.
    """
    await _limit()
    query = query_args(SyncDeltaQuery)
    svc = services()
    now = datetime.now(UTC)
    since = query.since if query.cursor is None else None  # the cursor wins
    if query.cursor is not None:
        cursor, epoch = query.cursor, query.epoch
        pos = await synclog.position(svc.pool)
        if (epoch is not None and epoch != pos.epoch) or not (
            pos.pruned_through <= cursor <= pos.last_seq
        ):
            return _respond(
                {
                    "videos": [],
                    "channels": [],
                    "resync": True,
                    "cursor": pos.last_seq,
                    "epoch": pos.epoch,
                    "syncTimestamp": iso(now),
                }
            )
        rows = await synclog.read_after(svc.pool, cursor, limit=DELTA_PAGE + 1)
    else:
        assert since is not None  # SyncDeltaQuery requires cursor or since
        pos = await synclog.position(svc.pool)
        rows = await synclog.read_since_time(svc.pool, since, limit=DELTA_PAGE + 1)
        cursor = rows[0].seq - 1 if rows else pos.last_seq
    more = len(rows) > DELTA_PAGE
    rows = rows[:DELTA_PAGE]
    videos, channels = conflate(rows)
    body: dict[str, Any] = {
        "videos": videos,
        "channels": channels,
        "syncTimestamp": iso(now),
        "cursor": rows[-1].seq if rows else cursor,
        "epoch": pos.epoch,
        "hasMore": more,
    }
    if since is not None:
        # A batch stamped just before this poll may commit just after it: the next poll
        # starts a little earlier (deltas are idempotent upserts, a repeat is harmless).
        body["syncTimestamp"] = iso(now - SINCE_OVERLAP)
        retention = timedelta(hours=svc.settings.sync_retention_hours)
        body["resync"] = since < now - retention
    return _respond(body)


@blueprint.get("/api/sync/full")
@document_headers(FullSyncHeaders)
@answers({200: SyncFullOut, 304: NotModified}, rate_limited=True)
async def full() -> Response:
    """The whole synced dataset, gzip on the wire, with ETag/If-None-Match.

    ``cursor`` and ``epoch`` are the sync-log position the dataset corresponds to exactly:
    continue from them with ``/api/sync/delta`` or the live channel.
    """
    await _limit()
    blob = await services().full_blob.current()  # from memory: no database work per request
    msgpack_wanted = _wants_msgpack()
    # One representation per format: the ETag says which, so caches never mix them up.
    etag = blob.meta.etag[:-1] + '-mp"' if msgpack_wanted else blob.meta.etag
    vary = {"ETag": etag, "Vary": "Accept, Accept-Encoding", "Cache-Control": "no-cache"}
    if etag in _if_none_match():
        return Response(b"", status=304, headers=vary)
    body = blob.msgpack_gzip if msgpack_wanted else blob.json_gzip
    content_type = MSGPACK if msgpack_wanted else "application/json"
    if "gzip" in request.headers.get("Accept-Encoding", "").lower():
        return Response(
            body, content_type=content_type, headers={**vary, "Content-Encoding": "gzip"}
        )
    return Response(gzip.decompress(body), content_type=content_type, headers=vary)


def _if_none_match() -> set[str]:
    raw = request.headers.get("If-None-Match", "")
    return {tag.strip().removeprefix("W/") for tag in raw.split(",") if tag.strip()}
