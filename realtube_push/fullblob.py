"""The full-sync blob: ``GET /api/sync/full`` as a stored, pre-compressed document.

Built by the full-blob worker (``workers/fullblob.py``) when the log moved, and by the route
itself when none is stored yet. Served from process memory (``BlobCache``): a herd of full
syncs after a restore costs the database nothing per request.

The document is ``{"videos": [...], "channels": [...], "generatedAt", "cursor", "epoch"}``,
stored gzip-compressed twice (JSON and msgpack) with a strong ETag: the quoted first 32 hex
digits of the SHA-256 of the uncompressed JSON bytes.

Promises:
- ``cursor``/``epoch`` name the sync-log position the data is exactly the state of (see
  ``store.fullblob``), so "load the blob, then follow deltas after its cursor" is lossless;
- a new blob (hence a new ETag) is stored only when the log moved (last_seq or epoch differ
  from the stored blob's) or no blob exists; every change to the synced dataset moves the log,
  so clients revalidating with ``If-None-Match`` download again only when data changed;
- encoding and compression run in a worker thread, never blocking the event loop.
"""

from __future__ import annotations

import gzip
import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import anyio
import anyio.to_thread
import asyncpg
import msgpack
import orjson
import structlog

from realtube_push.domain.views import iso
from realtube_push.observability import Metrics
from realtube_push.store import fullblob as blob_store
from realtube_push.store import synclog
from realtube_push.store.fullblob import StoredBlob

log = structlog.get_logger("realtube.fullblob")

GZIP_LEVEL: Final = 6


@dataclass(frozen=True, slots=True)
class EncodedBlob:
    """The document's two compressed encodings and the ETag of its JSON form."""

    etag: str
    json_gzip: bytes
    msgpack_gzip: bytes


def encode(document: dict[str, Any]) -> EncodedBlob:
    """JSON and msgpack, each gzipped; the ETag hashes the uncompressed JSON bytes.

    ``mtime=0`` keeps the gzip header free of the build time, so equal documents compress to
    equal bytes.
    """
    json_bytes = orjson.dumps(document)
    packed = msgpack.packb(document)
    return EncodedBlob(
        etag='"' + hashlib.sha256(json_bytes).hexdigest()[:32] + '"',
        json_gzip=gzip.compress(json_bytes, compresslevel=GZIP_LEVEL, mtime=0),
        msgpack_gzip=gzip.compress(packed, compresslevel=GZIP_LEVEL, mtime=0),
    )


async def rebuild(pool: asyncpg.Pool, *, force: bool = False) -> bool:
    """Build and store a new blob if the log moved since the stored one (or ``force``).

    Returns whether a blob was stored. Safe to run on several instances at once: the store
    keeps the one with the newest cursor.
    """
    async with pool.acquire() as conn:
        if not force:
            stored = await blob_store.load_meta(conn)
            pos = await synclog.position(conn)
            if stored is not None and (stored.epoch, stored.cursor) == (pos.epoch, pos.last_seq):
                return False
        dataset = await blob_store.build(conn)
    generated_at = datetime.now(UTC)
    document = {
        "videos": dataset.videos,
        "channels": dataset.channels,
        "generatedAt": iso(generated_at),
        "cursor": dataset.cursor,
        "epoch": dataset.epoch,
    }
    encoded = await anyio.to_thread.run_sync(encode, document)
    saved = await blob_store.save(
        pool,
        generated_at=generated_at,
        epoch=dataset.epoch,
        cursor=dataset.cursor,
        etag=encoded.etag,
        json_gzip=encoded.json_gzip,
        msgpack_gzip=encoded.msgpack_gzip,
    )
    if saved:
        log.info(
            "full_blob_built",
            cursor=dataset.cursor,
            videos=len(dataset.videos),
            channels=len(dataset.channels),
            json_gzip_bytes=len(encoded.json_gzip),
        )
    return saved


class BlobCache:
    """The stored blob in process memory, for ``GET /api/sync/full``.

    Promises:
    - a request is answered from memory. At most once every ``check_seconds`` a request
      looks whether the stored blob changed (one small query, its meta) and loads the
      bodies only when it did; requests arriving meanwhile wait for that look instead of
      making their own. So 2,000 concurrent full syncs cost at most one look, not 2,000
      loads (``realtube_full_sync_queries_total{query}`` counts them);
    - a blob stored by any instance is served within ``check_seconds``; after a restore (the
      log's epoch moved) the first look rebuilds it, so the resync herd gets the new epoch;
    - while the database cannot be reached the blob held is served on (it carries its own
      cursor: an older one only means a longer catch-up), and looked at again a period later.
    """

    def __init__(self, pool: asyncpg.Pool, metrics: Metrics, *, check_seconds: float) -> None:
        self._pool = pool
        self._queries = metrics.full_sync_queries
        self._check_seconds = check_seconds
        self._lock = anyio.Lock()
        self._blob: StoredBlob | None = None
        self._checked_at = float("-inf")  # when the last look started

    async def current(self) -> StoredBlob:
        """The blob to serve (built first if none is stored yet)."""
        blob = self._held()
        if blob is not None:
            return blob
        async with self._lock:
            return self._held() or await self._refresh()

    def _held(self) -> StoredBlob | None:
        if time.monotonic() - self._checked_at < self._check_seconds:
            return self._blob
        return None

    async def _refresh(self) -> StoredBlob:
        started = time.monotonic()
        held = self._blob
        try:
            self._queries.labels("check").inc()
            meta, log_epoch = await blob_store.version(self._pool)
            if meta is None or meta.epoch != log_epoch:
                # none yet, or one a restore left behind: every client of the new epoch is
                # about to ask for it, so build it now rather than at the worker's next run
                self._queries.labels("build").inc()
                await rebuild(self._pool)
                meta = None
            if meta is None or held is None or meta != held.meta:
                self._queries.labels("load").inc()
                loaded = await blob_store.load(self._pool)
                assert loaded is not None  # built above if there was none; never deleted
                held = loaded
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if held is None:
                raise
            log.warning("full_blob_check_failed", exc_info=True)
        self._blob, self._checked_at = held, started
        return held
