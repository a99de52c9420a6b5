"""The full-sync blob (``GET /api/sync/full``): the synced dataset as of one sync-log position.

Promises:
- ``build`` reads the log position (epoch, last_seq) and the dataset in ONE ``REPEATABLE READ``
  read-only snapshot. Because every change to the dataset appends to the log in the same
  transaction (and the append holds the ``sync_meta`` lock to commit), the dataset is exactly
  the state after applying seqs ``1..cursor``: a client that loads the blob and then asks for
  deltas after ``cursor`` misses nothing and replays nothing it already holds.

  Why one snapshot matters, concretely: read the cursor (say 41) and then, in a second
  snapshot, the videos after seq 42 (video X -> score 0) committed; the blob would lack X but
  claim cursor 41, and a client would replay 42 harmlessly. Reverse the two reads and the blob
  would hold X's old score with cursor 42: the client skips 42 and keeps X flagged forever.
- the dataset is every video with score > 0 that is neither hidden nor shadow-hidden (with its
  categories that still hold votes) and every channel with score > 0, read set-based
  (two queries, whatever the size), in id order so equal data encodes to equal bytes;
- ``save`` never replaces a blob with one of an older cursor in the same epoch, so a slow
  builder on another instance cannot roll the blob back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from realtube_push.domain.views import channel_object_from_row, video_delta
from realtube_push.store.db import Connection, Executor


@dataclass(frozen=True, slots=True)
class FullDataset:
    """The synced dataset and the log position it corresponds to."""

    epoch: str
    cursor: int
    videos: list[dict[str, Any]]
    channels: list[dict[str, Any]]


class BlobMeta(NamedTuple):
    """What a conditional request needs without loading a body (unpacks as a 4-tuple)."""

    etag: str
    generated_at: datetime
    cursor: int
    epoch: str


_VIDEOS = """
SELECT v.video_id, v.score, v.channel_id, v.locked, v.total_votes, v.last_updated,
       COALESCE(array_agg(c.category ORDER BY c.category) FILTER (WHERE c.votes > 0), '{}')
           AS categories,
       COALESCE(array_agg(c.votes ORDER BY c.category) FILTER (WHERE c.votes > 0), '{}')
           AS category_votes,
       COALESCE(array_agg(c.weighted_score ORDER BY c.category) FILTER (WHERE c.votes > 0), '{}')
           AS category_weighted
FROM videos v
LEFT JOIN video_categories c ON c.video_id = v.video_id
WHERE v.score > 0 AND NOT v.hidden AND NOT v.shadow_hidden
GROUP BY v.video_id
ORDER BY v.video_id
"""

_CHANNELS = """
SELECT channel_id, score, total_videos, flagged_videos, top_categories, locked, auto_flag_new,
       last_updated
FROM channels WHERE score > 0 ORDER BY channel_id
"""


async def build(conn: Connection) -> FullDataset:
    """Read the log position and the synced dataset from one consistent snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        meta = await conn.fetchrow("SELECT epoch, last_seq FROM sync_meta")
        assert meta is not None
        videos = [
            video_delta(
                video_id=r["video_id"],
                score=r["score"],
                categories={
                    cat: (votes, weighted)
                    for cat, votes, weighted in zip(
                        r["categories"], r["category_votes"], r["category_weighted"], strict=True
                    )
                },
                channel_id=r["channel_id"],
                locked=r["locked"],
                total_votes=r["total_votes"],
                last_updated=r["last_updated"],
                action="update",
            )
            for r in await conn.fetch(_VIDEOS)
        ]
        channels = [channel_object_from_row(r) for r in await conn.fetch(_CHANNELS)]
    return FullDataset(
        epoch=meta["epoch"], cursor=int(meta["last_seq"]), videos=videos, channels=channels
    )


_SAVE = """
INSERT INTO full_cache_blob (singleton, generated_at, epoch, cursor, etag, json_gzip, msgpack_gzip)
VALUES (true, $1, $2, $3, $4, $5, $6)
ON CONFLICT (singleton) DO UPDATE SET
    generated_at = EXCLUDED.generated_at, epoch = EXCLUDED.epoch, cursor = EXCLUDED.cursor,
    etag = EXCLUDED.etag, json_gzip = EXCLUDED.json_gzip, msgpack_gzip = EXCLUDED.msgpack_gzip
WHERE full_cache_blob.epoch <> EXCLUDED.epoch OR full_cache_blob.cursor <= EXCLUDED.cursor
RETURNING true
"""


async def save(
    conn: Executor,
    *,
    generated_at: datetime,
    epoch: str,
    cursor: int,
    etag: str,
    json_gzip: bytes,
    msgpack_gzip: bytes,
) -> bool:
    """Store the blob (upsert of the singleton row); False when a newer one is already stored."""
    saved = await conn.fetchval(_SAVE, generated_at, epoch, cursor, etag, json_gzip, msgpack_gzip)
    return bool(saved)


async def load_meta(conn: Executor) -> BlobMeta | None:
    """``(etag, generated_at, cursor, epoch)`` of the stored blob; None before any build."""
    row = await conn.fetchrow(
        "SELECT etag, generated_at, cursor, epoch FROM full_cache_blob WHERE singleton"
    )
    if row is None:
        return None
    return BlobMeta(row["etag"], row["generated_at"], int(row["cursor"]), row["epoch"])


async def version(conn: Executor) -> tuple[BlobMeta | None, str]:
    """The stored blob's meta (None before any build) and the log's epoch, in one query: a
    blob of another epoch than the log's is one a restore left behind."""
    row = await conn.fetchrow(
        "SELECT m.epoch AS log_epoch, b.etag, b.generated_at, b.cursor, b.epoch"
        " FROM sync_meta m LEFT JOIN full_cache_blob b ON b.singleton"
    )
    assert row is not None
    if row["etag"] is None:
        return None, row["log_epoch"]
    meta = BlobMeta(row["etag"], row["generated_at"], int(row["cursor"]), row["epoch"])
    return meta, row["log_epoch"]


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """The stored blob: its meta and both gzip-compressed bodies."""

    meta: BlobMeta
    json_gzip: bytes
    msgpack_gzip: bytes


async def load(conn: Executor) -> StoredBlob | None:
    """The stored blob, bodies included (one query), or None before the first build."""
    row = await conn.fetchrow(
        "SELECT etag, generated_at, cursor, epoch, json_gzip, msgpack_gzip"
        " FROM full_cache_blob WHERE singleton"
    )
    if row is None:
        return None
    return StoredBlob(
        BlobMeta(row["etag"], row["generated_at"], int(row["cursor"]), row["epoch"]),
        row["json_gzip"],
        row["msgpack_gzip"],
    )
