"""The sync log (``sync_cache``): every change to the synced dataset, numbered.

Promises:
- ``seq`` is gap-free and commit-ordered. An append bumps ``sync_meta.last_seq`` and holds
  that row's lock until its transaction ends; a rolled-back append gives its numbers back.
  So a reader that has seen seq N committed has seen every seq below N committed too.
- ``epoch`` names the stream. Seqs are only comparable within one epoch. Why it matters:
  restore an old backup whose log ran [1, 2, 3] while clients hold cursor 7 of the lost
  stream; the new appends 4..7 would look already-applied and be skipped silently. A new
  epoch makes those clients resync instead.
- Rows older than the retention are pruned; ``pruned_through`` remembers the highest seq
  gone, so a cursor at or below it is answered with "resync", never with a silent hole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from realtube_push.store.db import Connection, Executor


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One change to append: a video or channel delta payload (the REST delta object)."""

    kind: str  # "video" | "channel"
    entity_id: str
    entity_hash: str
    action: str  # "update" | "remove"
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AppendedBatch:
    """Seqs ``first_seq..last_seq`` (inclusive) now hold the appended entries, in order."""

    epoch: str
    first_seq: int
    last_seq: int
    entries: tuple[LogEntry, ...]


@dataclass(frozen=True, slots=True)
class SyncPosition:
    """Where the log stands: its epoch, newest seq, and the highest seq already pruned."""

    epoch: str
    last_seq: int
    pruned_through: int


@dataclass(frozen=True, slots=True)
class LoggedDelta:
    """A delta read back from the log."""

    seq: int
    kind: str
    entity_id: str
    entity_hash: str
    action: str
    payload: dict[str, Any]


_APPEND = """
WITH meta AS (
    UPDATE sync_meta SET last_seq = last_seq + $1 RETURNING last_seq - $1 AS base, epoch
), ins AS (
    INSERT INTO sync_cache (seq, kind, entity_id, entity_hash, action, payload, created_at)
    SELECT meta.base + e.ord, e.kind, e.entity_id, e.entity_hash, e.action, e.payload,
           clock_timestamp()
    FROM meta, unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[])
        WITH ORDINALITY AS e(kind, entity_id, entity_hash, action, payload, ord)
)
SELECT base, epoch FROM meta
"""


async def append(conn: Connection, entries: Sequence[LogEntry]) -> AppendedBatch | None:
    """Append ``entries`` in order. Call last in the transaction: the seq lock is held to commit."""
    if not entries:
        return None
    row = await conn.fetchrow(
        _APPEND,
        len(entries),
        [e.kind for e in entries],
        [e.entity_id for e in entries],
        [e.entity_hash for e in entries],
        [e.action for e in entries],
        [e.payload for e in entries],
    )
    assert row is not None
    base = int(row["base"])
    return AppendedBatch(
        epoch=row["epoch"], first_seq=base + 1, last_seq=base + len(entries), entries=tuple(entries)
    )


async def position(conn: Executor) -> SyncPosition:
    """The log's epoch, newest committed seq and pruning mark."""
    row = await conn.fetchrow("SELECT epoch, last_seq, pruned_through FROM sync_meta")
    assert row is not None
    return SyncPosition(row["epoch"], int(row["last_seq"]), int(row["pruned_through"]))


async def read_after(
    conn: Executor, after_seq: int, *, limit: int, upto: int | None = None
) -> list[LoggedDelta]:
    """Deltas with ``after_seq < seq (<= upto)``, in seq order, at most ``limit``."""
    rows = await conn.fetch(
        "SELECT seq, kind, entity_id, entity_hash, action, payload FROM sync_cache"
        " WHERE seq > $1 AND ($2::bigint IS NULL OR seq <= $2) ORDER BY seq LIMIT $3",
        after_seq,
        upto,
        limit,
    )
    return [_delta(r) for r in rows]


async def read_since_time(conn: Executor, since: Any, *, limit: int) -> list[LoggedDelta]:
    """Deltas appended after the time ``since``, in seq order, at most ``limit``."""
    rows = await conn.fetch(
        "SELECT seq, kind, entity_id, entity_hash, action, payload FROM sync_cache"
        " WHERE created_at > $1 ORDER BY seq LIMIT $2",
        since,
        limit,
    )
    return [_delta(r) for r in rows]


async def oldest_time(conn: Executor) -> Any:
    """When the oldest retained delta was appended (None for an empty log)."""
    return await conn.fetchval("SELECT min(created_at) FROM sync_cache")


_PRUNE = """
WITH gone AS (
    DELETE FROM sync_cache WHERE created_at < now() - make_interval(secs => $1) RETURNING seq
), mark AS (
    UPDATE sync_meta SET pruned_through = GREATEST(pruned_through, (SELECT max(seq) FROM gone))
    WHERE EXISTS (SELECT 1 FROM gone)
)
SELECT count(*) FROM gone
"""


async def prune(conn: Executor, *, retention_seconds: float) -> int:
    """Delete deltas older than the retention; returns how many went."""
    return int(await conn.fetchval(_PRUNE, retention_seconds))


def _delta(row: asyncpg.Record) -> LoggedDelta:
    return LoggedDelta(
        seq=int(row["seq"]),
        kind=row["kind"],
        entity_id=row["entity_id"],
        entity_hash=row["entity_hash"],
        action=row["action"],
        payload=row["payload"],
    )
