"""The two REST reads of the sync protocol: the full document and a page of deltas.

Promises: each returns the decoded map (MessagePack asked for, JSON understood too) or raises
``Refused`` for an unexpected status (with its ``Retry-After``) and ``ResyncRequired``
(``"malformed"``) for a body that is not a map; ``fetch_full`` returns None for 304 Not
Modified. Neither touches the cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from realtube_push.client import wire
from realtube_push.client.cache import Cursor, ResyncRequired
from realtube_push.client.session import Refused

#: A full document can be large: reading it may take longer than connecting.
_FULL_READ_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class FullDocument:
    """A ``GET /api/sync/full`` answer and its ``ETag`` (for the next conditional request)."""

    doc: dict[str, Any]
    etag: str | None


async def fetch_full(
    http: httpx.AsyncClient,
    base_url: str,
    headers: Mapping[str, str],
    *,
    etag: str | None,
    connect_timeout: float,
) -> FullDocument | None:
    """``GET /api/sync/full`` (gzip); None when ``etag`` is given and still current."""
    request_headers = {**headers, "Accept": wire.MSGPACK_MIME, "Accept-Encoding": "gzip"}
    if etag is not None:
        request_headers["If-None-Match"] = etag
    response = await http.get(
        base_url + wire.FULL_PATH,
        headers=request_headers,
        timeout=httpx.Timeout(connect_timeout, read=max(connect_timeout, _FULL_READ_TIMEOUT)),
    )
    if response.status_code == 304 and etag is not None:
        return None
    return FullDocument(_map(response, "full document"), response.headers.get("ETag"))


async def fetch_delta_page(
    http: httpx.AsyncClient, base_url: str, headers: Mapping[str, str], cursor: Cursor
) -> dict[str, Any]:
    """``GET /api/sync/delta?cursor=&epoch=``: one page of the changes after ``cursor``."""
    response = await http.get(
        base_url + wire.DELTA_PATH,
        params={"cursor": str(cursor.seq), "epoch": cursor.epoch},
        headers={**headers, "Accept": wire.MSGPACK_MIME},
    )
    return _map(response, "delta page")


def _map(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 200:
        raise Refused.of(response)
    body = wire.decode_body(response.content, response.headers.get("Content-Type", ""))
    if not isinstance(body, dict):
        raise ResyncRequired("malformed", f"{what} is not a map")
    return body
