"""The errors a background loop survives: its dependency went away for a while.

A loop catching these logs, waits and tries again; anything else is a bug and propagates
(ending the process's task group, so the orchestrator restarts the instance).
"""

from __future__ import annotations

from typing import Final

import asyncpg
from redis.exceptions import RedisError

TRANSIENT_ERRORS: Final = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,  # the connection was lost mid-query
    asyncpg.InternalClientError,  # ... or mid-protocol
    RedisError,
)
