"""``LIVE_MAX_CONNECTIONS_PER_IP`` is one cap for the whole fleet: every process of every
instance sharing the Redis counts an address's live connections together, a process that dies
gives its slots up once their expiry passes, and a Redis outage falls back to each process's
own count instead of refusing anyone (docs/protocol.md section 4, docs/operations.md)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import pytest
from httpx_ws import WebSocketUpgradeError

from tests.support.live import (
    Refused,
    RestartableRedis,
    Subscriber,
    live_connections,
    open_ws,
    server_errors,
    slots_held,
    sse_subscriber,
    until_closed,
    ws_subscriber,
)
from tests.support.polling import eventually
from tests.support.servers import Server

pytestmark = pytest.mark.anyio

MAX_PER_IP = 3


async def ws_status(server: Server) -> int:
    """Open a WebSocket and send nothing: the handshake's status (101, or the refusal)."""
    try:
        async with open_ws(server.url) as ws:
            await until_closed(ws, within=5)  # the server gives up waiting for the hello
            return 101
    except WebSocketUpgradeError as exc:
        return exc.response.status_code


async def refused_status(server: Server, transport: str) -> int:
    """The status of a live connection that the test expects to be refused (0 if it opened)."""
    if transport == "ws":
        try:
            async with open_ws(server.url):
                return 0
        except WebSocketUpgradeError as exc:
            return exc.response.status_code
    try:
        async with sse_subscriber(server.url):
            return 0
    except Refused as exc:
        return exc.response.status_code


@contextlib.asynccontextmanager
async def welcomed(transport: str, server: Server) -> AsyncIterator[Subscriber]:
    opener = ws_subscriber if transport == "ws" else sse_subscriber
    async with opener(server.url) as sub:
        await sub.until_frame("welcome")
        yield sub


async def test_two_instances_share_one_cap_per_address(servers):
    a = servers.start(LIVE_MAX_CONNECTIONS_PER_IP=str(MAX_PER_IP))
    b = servers.start(LIVE_MAX_CONNECTIONS_PER_IP=str(MAX_PER_IP))
    async with (
        welcomed("ws", a),
        welcomed("sse", b),
        welcomed("ws", b) as third,
    ):
        # the address holds the cap across both: each instance refuses, on both transports
        for server in (a, b):
            assert await refused_status(server, "ws") == 429
            assert await refused_status(server, "sse") == 429
        await third.until_frame("welcome")
    # every connection gone (each process gives its slots back a moment after): the cap is
    # free again, wherever the address connects
    await eventually(lambda: no_slots_held(a), what="the slots given back")
    async with welcomed("ws", a), welcomed("ws", a), welcomed("sse", b):
        assert await refused_status(b, "ws") == 429
    assert not server_errors(a.log())
    assert not server_errors(b.log())


async def test_with_two_processes_a_herd_from_one_address_gets_exactly_the_cap(servers):
    """WEB_CONCURRENCY=2: the kernel spreads the handshakes over both processes, which let
    the address hold 2x the cap when each counted alone."""
    server = servers.start(
        WEB_CONCURRENCY="2",
        LIVE_MAX_CONNECTIONS_PER_IP=str(MAX_PER_IP),
        LIVE_HELLO_TIMEOUT_SECONDS="1",
    )
    statuses: list[int] = []

    async def connect() -> None:
        statuses.append(await ws_status(server))

    async with anyio.create_task_group() as tg:  # all at once: handshakes, no hello yet
        for _ in range(4 * MAX_PER_IP):
            tg.start_soon(connect)
    assert sorted(statuses) == [101] * MAX_PER_IP + [429] * (3 * MAX_PER_IP)
    assert not server_errors(server.log())


async def admitted(server: Server) -> bool:
    """Whether a WebSocket from this address is let in now (then closed again); a refusal
    must be the per-address one."""
    status = await refused_status(server, "ws")
    assert status in (0, 429), status
    return status == 0


async def test_a_killed_instance_frees_its_slots_after_their_expiry(servers):
    settings = {"LIVE_MAX_CONNECTIONS_PER_IP": str(MAX_PER_IP), "LIVE_SLOT_TTL_SECONDS": "2"}
    doomed = servers.start(**settings)
    survivor = servers.start(**settings)
    async with contextlib.AsyncExitStack() as held:
        for _ in range(MAX_PER_IP):
            await held.enter_async_context(welcomed("ws", doomed))
        assert not await admitted(survivor)
        doomed.kill()  # no goodbye: its slots stay in Redis until their expiry passes
    await eventually(lambda: admitted(survivor), timeout=30, what="the dead instance's slots freed")
    async with welcomed("ws", survivor), welcomed("sse", survivor), welcomed("ws", survivor):
        assert await refused_status(survivor, "ws") == 429  # and the cap holds again
    assert not server_errors(survivor.log())


async def test_a_stopped_instance_frees_its_slots_at_once(servers):
    # an expiry far longer than the test: only the stopping instance can free its slots
    settings = {"LIVE_MAX_CONNECTIONS_PER_IP": str(MAX_PER_IP), "LIVE_SLOT_TTL_SECONDS": "600"}
    leaving = servers.start(**settings, SHUTDOWN_GRACE_SECONDS="5")
    staying = servers.start(**settings)
    async with contextlib.AsyncExitStack() as held:
        for _ in range(MAX_PER_IP):
            sub = await held.enter_async_context(ws_subscriber(leaving.url))
            await sub.until_frame("welcome")
        assert not await admitted(staying)
        await anyio.to_thread.run_sync(leaving.terminate)
    await eventually(lambda: admitted(staying), timeout=20, what="the stopped instance's slots")
    assert not server_errors(staying.log())


async def test_while_redis_is_down_each_process_counts_alone_and_refuses_no_one_else(
    servers, tmp_path
):
    redis = RestartableRedis(tmp_path)
    redis.start()
    try:
        server = servers.start(
            REDIS_URL=redis.url,
            LIVE_MAX_CONNECTIONS_PER_IP=str(MAX_PER_IP),
            LIVE_SLOT_TTL_SECONDS="1",
        )
        async with welcomed("ws", server):
            redis.stop()
            # degraded, not refused: the connections this process holds count, up to the cap
            async with welcomed("sse", server), welcomed("ws", server):
                assert await refused_status(server, "ws") == 429
            redis.start()
            # back: this process writes its true count again, and the fleet-wide cap holds
            await eventually(lambda: admitted(server), what="a connection after the outage")
            async with welcomed("ws", server), welcomed("sse", server):
                assert await refused_status(server, "sse") == 429
        await eventually(lambda: live_connections_are(server, 0), what="no session left")
    finally:
        redis.stop()
    assert not server_errors(server.log())


async def no_slots_held(server: Server) -> bool:
    return await slots_held(server) == 0


async def live_connections_are(server: Server, n: int) -> bool:
    return await live_connections(server.url) == n
