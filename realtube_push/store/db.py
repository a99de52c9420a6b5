"""Connection pool creation and schema migrations.

Migrations are the plain numbered ``.sql`` files in ``migrations/``. Each file records its own
version in ``schema_migrations``, so a database initialised by docker's
``docker-entrypoint-initdb.d`` and one migrated by ``realtube-push migrate`` look the same.
Applying is idempotent and safe to run from several instances at once (an advisory lock
serialises them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeAlias

import anyio
import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy
from asyncpg.transaction import Transaction

# What store functions run on: a connection of their own or one borrowed from the pool (a
# transaction's statements need one of these) ...
Connection: TypeAlias = asyncpg.Connection | PoolConnectionProxy
# ... or, for a single statement, the pool itself (it borrows a connection for it)
Executor: TypeAlias = Connection | asyncpg.Pool


@asynccontextmanager
async def transaction(conn: Connection) -> AsyncIterator[None]:
    """``conn.transaction()`` whose end is not cut short by a cancellation.

    AnyIO cancels a cancelled task again at every await inside the cancelled scope, so the
    ROLLBACK that asyncpg's own ``__aexit__`` sends on the way out of a cancelled worker is
    cancelled too; the connection then goes back to the pool inside a transaction, and
    asyncpg logs "Resetting connection with an active transaction" at error level on every
    shutdown that catches a worker mid-batch. Ending the transaction shielded costs one
    round trip, bounded by the pool's ``command_timeout``.
    """
    tx = conn.transaction()
    try:
        await tx.start()
    except BaseException:
        # a BEGIN cut short may or may not have begun: a connection in an unknown state
        # leaves the pool rather than carry a transaction into its next use
        conn.terminate()
        raise
    try:
        yield
    except BaseException:
        await end(conn, tx, commit=False)
        raise
    await end(conn, tx, commit=True)


async def end(conn: Connection, tx: Transaction, *, commit: bool) -> None:
    """Commit or roll back ``tx``, shielded from cancellation (see ``transaction``).

    A statement cut short by a cancellation keeps the connection busy until PostgreSQL has
    answered the cancel request, and then it cannot end the transaction: it leaves the pool
    instead (PostgreSQL rolls back what a closed connection left open). A commit that could
    not be sent still raises; a rollback that could not be sent does not, since the
    connection's end has the same effect."""
    with anyio.CancelScope(shield=True):
        try:
            if commit:
                await tx.commit()
            else:
                await tx.rollback()
        except asyncpg.InterfaceError:
            conn.terminate()
            if commit:
                raise


MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations"
_MIGRATION_LOCK = 0x5254_4D49  # arbitrary constant: "RTMI"


def migrations_dir(configured: Path | None = None) -> Path:
    """Where the migrations are: ``MIGRATIONS_DIR`` when set, else the source tree's.

    Raises ``FileNotFoundError`` when that directory holds no migration, so an installed
    package that cannot find them fails at start instead of serving an empty schema.
    """
    directory = configured if configured is not None else MIGRATIONS_DIR
    if not migration_files(directory):
        raise FileNotFoundError(f"no migrations (NNN_*.sql) in {directory}; set MIGRATIONS_DIR")
    return directory


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    """The migration files in the order they apply (by their numeric prefix)."""
    return sorted(directory.glob("[0-9][0-9][0-9]_*.sql"))


async def apply_migrations(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every migration not yet recorded; returns the versions applied now."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for path in migration_files(directory):
            version = path.stem
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text(encoding="utf-8"))
                await conn.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1) ON CONFLICT DO NOTHING",
                    version,
                )
            applied_now.append(version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: orjson.dumps(v).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


async def create_pool(dsn: str, *, min_size: int, max_size: int) -> asyncpg.Pool:
    """A pool whose connections decode jsonb to Python values."""
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=30
    )
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    """A single connection with the same codecs as the pool (for LISTEN and tools)."""
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn
