"""SQL of the public database export: what leaves the building, column by column.

The export is built in a **scratch database** holding only the public columns, and
``pg_dump`` dumps that database, never the live one: ``pg_dump`` can leave out a table but
not a column, and a column we forget to leave out would be published. Here the rule is the
other way round: nothing is exported unless a ``PublicTable`` below names it.

Exported (every table keyed as in the live schema; the rows of one export come from one
snapshot, so they agree with each other):

| table              | columns                                                               |
|--------------------|-----------------------------------------------------------------------|
| ``channels``       | channel_id, score, total_videos, flagged_videos, top_categories,      |
|                    | locked, auto_flag_new, last_updated                                   |
| ``videos``         | video_id, channel_id, score, total_votes, locked, created_at,          |
|                    | last_updated (visible videos only: hidden and shadow-hidden ones are  |
|                    | left out, with their categories and votes, as the API leaves them out)|
| ``video_categories``| video_id, category, votes, weighted_score                            |
| ``users``          | user_hash, trust_score, total_votes, accuracy_rate, is_vip, first_seen|
| ``votes``          | video_id, user_hash, category, cast_at                                |

Left out, and why:

- ``ip_hashes`` and ``votes.ip_hash``: per-address records (salted, but linkable).
- ``users.user_id``: the API's ``userId`` is the only credential a voter has (whoever knows
  it can vote and withdraw votes as that user), so it is replaced by ``user_hash`` =
  SHA-256 hex of it: stable across exports, joinable between users and votes, irreversible.
- ``users.is_shadowbanned`` and ``votes.weight``/``votes.vip`` (a shadowbanned user's vote
  is snapshotted with weight 0 and vip false, which would reveal the ban); shadowbanned
  users' votes themselves stay in, since leaving them out would reveal the ban too.
- ``votes.user_agent``, ``users.last_active``: fingerprinting detail nobody needs.
- ``vip_actions``: a moderation log whose reasons are moderators' private notes and whose
  actions include shadowbans and shadow-hides; what moderation made public is already in
  ``videos.locked`` and ``channels.locked``.
- queues, the sync log, the full-sync blob and ``schema_migrations``: internal machinery.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import asyncpg

# Held (per source database) for the whole export: two exporters would otherwise drop each
# other's scratch database.
_EXPORT_LOCK = 0x5254_4558  # arbitrary constant: "RTEX"

# SHA-256 hex of the API's userId, the same construction as video_hash for videoId.
_USER_HASH = "encode(sha256(convert_to({col}, 'UTF8')), 'hex')"
_VISIBLE = "NOT hidden AND NOT shadow_hidden"


@dataclass(frozen=True, slots=True)
class PublicTable:
    """One exported table: its scratch-database DDL and the query that fills it.

    ``source`` runs on the live database and yields exactly ``columns``, in order, with the
    types of ``ddl`` (rows travel in COPY's binary format, which checks both).
    """

    name: str
    columns: tuple[str, ...]
    ddl: str
    source: str
    order_by: str


PUBLIC_TABLES: tuple[PublicTable, ...] = (
    PublicTable(
        name="channels",
        columns=(
            "channel_id",
            "score",
            "total_videos",
            "flagged_videos",
            "top_categories",
            "locked",
            "auto_flag_new",
            "last_updated",
        ),
        ddl="""
CREATE TABLE channels (
    channel_id     text PRIMARY KEY,
    score          double precision NOT NULL,
    total_videos   integer NOT NULL,
    flagged_videos integer NOT NULL,
    top_categories text[] NOT NULL,
    locked         boolean NOT NULL,
    auto_flag_new  boolean NOT NULL,
    last_updated   timestamptz NOT NULL
);
COMMENT ON TABLE channels IS 'RealTube channel scores (aggregated from their videos).';
""",
        source="""
SELECT channel_id, score, total_videos, flagged_videos, top_categories, locked,
       auto_flag_new, last_updated
FROM channels
""",
        order_by="channel_id",
    ),
    PublicTable(
        name="videos",
        columns=(
            "video_id",
            "channel_id",
            "score",
            "total_votes",
            "locked",
            "created_at",
            "last_updated",
        ),
        ddl="""
CREATE TABLE videos (
    video_id     text PRIMARY KEY,
    channel_id   text,
    score        double precision NOT NULL,
    total_votes  integer NOT NULL,
    locked       boolean NOT NULL,
    created_at   timestamptz NOT NULL,
    last_updated timestamptz NOT NULL
);
COMMENT ON TABLE videos IS 'RealTube video scores (0-100); hidden videos are not exported.';
""",
        source=f"""
SELECT video_id, channel_id, score, total_votes, locked, created_at, last_updated
FROM videos WHERE {_VISIBLE}
""",
        order_by="video_id",
    ),
    PublicTable(
        name="video_categories",
        columns=("video_id", "category", "votes", "weighted_score"),
        ddl="""
CREATE TABLE video_categories (
    video_id       text NOT NULL REFERENCES videos (video_id),
    category       text NOT NULL,
    votes          integer NOT NULL,
    weighted_score double precision NOT NULL,
    PRIMARY KEY (video_id, category)
);
COMMENT ON TABLE video_categories IS 'Per-category vote counts and trust-weighted scores.';
""",
        source=f"""
SELECT c.video_id, c.category, c.votes, c.weighted_score
FROM video_categories c JOIN videos v USING (video_id) WHERE {_VISIBLE}
""",
        order_by="video_id, category",
    ),
    PublicTable(
        name="users",
        columns=(
            "user_hash",
            "trust_score",
            "total_votes",
            "accuracy_rate",
            "is_vip",
            "first_seen",
        ),
        ddl="""
CREATE TABLE users (
    user_hash     text PRIMARY KEY,
    trust_score   double precision NOT NULL,
    total_votes   integer NOT NULL,
    accuracy_rate double precision NOT NULL,
    is_vip        boolean NOT NULL,
    first_seen    timestamptz NOT NULL
);
COMMENT ON TABLE users IS 'Voters, pseudonymous: no API userId is exported.';
COMMENT ON COLUMN users.user_hash IS 'SHA-256 hex of the API userId.';
""",
        source=f"""
SELECT {_USER_HASH.format(col="user_id")}, trust_score, total_votes, accuracy_rate, is_vip,
       first_seen
FROM users
""",
        order_by="user_hash",
    ),
    PublicTable(
        name="votes",
        columns=("video_id", "user_hash", "category", "cast_at"),
        ddl="""
CREATE TABLE votes (
    video_id  text NOT NULL REFERENCES videos (video_id),
    user_hash text NOT NULL REFERENCES users (user_hash),
    category  text NOT NULL,
    cast_at   timestamptz NOT NULL,
    PRIMARY KEY (video_id, user_hash)
);
COMMENT ON TABLE votes IS 'One row per user and video: the category that user chose.';
COMMENT ON COLUMN votes.user_hash IS 'SHA-256 hex of the API userId (see users).';
""",
        source=f"""
SELECT t.video_id, {_USER_HASH.format(col="t.user_id")}, t.category, t.cast_at
FROM votes t JOIN videos v USING (video_id) WHERE {_VISIBLE}
""",
        order_by="video_id, user_hash",
    ),
)


def _ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (database names cannot be bind parameters)."""
    return '"' + name.replace('"', '""') + '"'


async def database_name(conn: asyncpg.Connection) -> str:
    """The name of the database ``conn`` is connected to."""
    name: str = await conn.fetchval("SELECT current_database()")
    return name


async def try_lock(conn: asyncpg.Connection) -> bool:
    """Take the export lock for this database; False if another export runs.

    Session level: it is released when ``conn`` closes, however the export ends.
    """
    locked: bool = await conn.fetchval("SELECT pg_try_advisory_lock($1)", _EXPORT_LOCK)
    return locked


async def create_database(conn: asyncpg.Connection, name: str) -> None:
    """Create an empty database ``name``, dropping a leftover of a crashed export first.

    ``template0`` keeps objects an administrator added to ``template1`` out of the export.
    """
    await drop_database(conn, name)
    await conn.execute(f"CREATE DATABASE {_ident(name)} TEMPLATE template0")


async def drop_database(conn: asyncpg.Connection, name: str) -> None:
    """Drop database ``name`` if it exists, disconnecting anyone still in it."""
    await conn.execute(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")


async def create_public_schema(scratch: asyncpg.Connection) -> None:
    """Create every exported table, empty, in the scratch database."""
    async with scratch.transaction():
        for table in PUBLIC_TABLES:
            await scratch.execute(table.ddl)


async def copy_table(
    source: asyncpg.Connection, scratch: asyncpg.Connection, table: PublicTable
) -> int:
    """Stream ``table``'s public rows from the live database into the scratch one.

    Rows travel as COPY binary chunks through a small bounded buffer, so memory stays flat
    however large the table. Run it inside the caller's snapshot transaction on ``source``.
    Returns the number of rows copied.
    """
    send, receive = anyio.create_memory_object_stream[bytes](8)

    async def produce() -> None:
        async with send:
            await source.copy_from_query(table.source, output=send.send, format="binary")

    async def chunks() -> AsyncIterator[bytes]:
        async with receive:
            async for chunk in receive:
                yield chunk

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        status = await scratch.copy_to_table(
            table.name, source=chunks(), columns=list(table.columns), format="binary"
        )
    return int(status.split()[-1])


async def write_csv(scratch: asyncpg.Connection, table: PublicTable, path: Path) -> None:
    """Write ``table`` from the scratch database to ``path`` as CSV with a header row."""
    await scratch.copy_from_query(
        f"SELECT * FROM {_ident(table.name)} ORDER BY {table.order_by}",
        output=path,
        format="csv",
        header=True,
    )
