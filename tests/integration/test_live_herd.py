"""Herds: many clients resuming, reconnecting or resyncing at once (docs/protocol.md).

- Clients resuming from the same cursor share the replay: each page of the log is read from
  storage once (``realtube_live_replay_pages_total``), not once per client, and the log's
  position is not read per handshake; every client still gets every delta, once, in order.
- A shutdown's ``reconnect`` notices and an epoch change's ``resync`` frames carry delays
  drawn over a window that grows with the number of connections: the herd comes back
  spread over that window, not in one instant.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
import httpx
import pytest

from realtube_push.domain.ids import entity_hash
from realtube_push.store import db, synclog
from realtube_push.store.synclog import LogEntry
from tests.support import pg
from tests.support.live import (
    JSON,
    MSGPACK,
    Dataset,
    Subscriber,
    log_position,
    metric,
    server_errors,
    sse_subscriber,
    ws_subscriber,
)
from tests.support.polling import eventually
from tests.support.servers import Server

pytestmark = pytest.mark.anyio

HERD = 24
GAP = 2_500  # deltas the herd missed: three pages or four, depending on where it starts
PAGE = 1_000  # push/replay.py's page

HERD_ENV = {
    "LIVE_EMPTY_FLUSH_SECONDS": "0.1",
    "LIVE_TAIL_CHECK_SECONDS": "0.2",
    "LIVE_MAX_CONNECTIONS_PER_IP": "200",
}


async def append_to_log(database_url: str, count: int) -> list[str]:
    """``count`` video deltas appended straight to the sync log (not published: the servers'
    buses find them with their tail check, and Redis's recent store never holds them, so a
    replay of them must read PostgreSQL). Returns the video ids in seq order."""
    videos = [f"herd{secrets.token_hex(4)}" for _ in range(count)]
    conn = await db.connect(database_url)
    try:
        for start in range(0, count, 500):
            async with conn.transaction():
                await synclog.append(
                    conn,
                    [
                        LogEntry(
                            "video",
                            video,
                            entity_hash(video),
                            "update",
                            {"videoId": video, "action": "update", "score": 0.5},
                        )
                        for video in videos[start : start + 500]
                    ],
                )
    finally:
        await conn.close()
    return videos


async def hub_head(server: Server) -> int:
    async with httpx.AsyncClient(base_url=server.url) as client:
        return int((await client.get("/health/ready")).json()["checks"]["live"]["seq"])


async def replay_counters(server: Server) -> dict[str, float]:
    name = "realtube_live_replay_pages_total"
    counts = {s: await metric(server.url, name, source=s) for s in ("shared", "redis", "postgres")}
    counts["built"] = await metric(server.url, "realtube_live_replay_frames_total", result="built")
    counts["position"] = await metric(server.url, "realtube_live_position_reads_total")
    return counts


def pages_spanned(after: int, upto: int) -> int:
    return (upto - 1) // PAGE - after // PAGE + 1


@contextlib.asynccontextmanager
async def herd_member(index: int, server: Server, dataset: Dataset) -> AsyncIterator[Subscriber]:
    """Every fourth an SSE stream, the others WebSockets in MessagePack or JSON."""
    if index % 4 == 3:
        async with sse_subscriber(server.url, dataset, last_event_id=index % 8 == 7) as sub:
            yield sub
    else:
        async with ws_subscriber(server.url, dataset, codec=JSON if index % 2 else MSGPACK) as sub:
            yield sub


async def test_a_herd_resuming_from_one_cursor_reads_each_page_once_and_gets_every_delta(
    servers, database_url
):
    server = servers.start(**HERD_ENV)
    epoch, cursor = await log_position(database_url)
    await eventually(lambda: _at(server, cursor), timeout=15, what=f"hub at {cursor}")
    videos = await append_to_log(database_url, GAP)
    target = cursor + GAP
    await eventually(lambda: _at(server, target), timeout=30, what=f"hub at {target}")
    before = await replay_counters(server)

    subs: list[Subscriber] = []

    async def resume(index: int, ready: anyio.Event) -> None:
        dataset = Dataset(epoch=epoch, seq=cursor)
        async with herd_member(index, server, dataset) as sub:
            subs.append(sub)
            await sub.until_seq(target, within=60)
            ready.set()
            await done.wait()

    done = anyio.Event()
    readies = [anyio.Event() for _ in range(HERD)]
    async with anyio.create_task_group() as tg:
        for index in range(HERD):
            tg.start_soon(resume, index, readies[index])
        for ready in readies:
            await ready.wait()
        done.set()

    after = await replay_counters(server)
    pages = pages_spanned(cursor, target)
    read = {s: after[s] - before[s] for s in after}
    # each page came from PostgreSQL once (Redis never held these deltas), then was shared
    assert read["postgres"] <= pages, read
    assert read["postgres"] + read["redis"] + read["shared"] == HERD * pages, read
    # one frame per page, whatever the codec: encoded once per codec, not per client
    assert read["built"] <= pages, read
    # no read of the log's position per handshake
    assert read["position"] <= 3, read
    for sub in subs:
        assert sub.welcome is not None, sub.summary()
        assert sub.welcome["resume"] == "replay", sub.summary()
        got = [(d["seq"], d["videoId"]) for d in sub.video_deltas]
        assert got == list(zip(range(cursor + 1, target + 1), videos, strict=True)), sub.summary()
    assert not server_errors(server.log())


async def _at(server: Server, seq: int) -> bool:
    return await hub_head(server) >= seq


async def test_a_shutdown_spreads_the_reconnects_over_a_window_that_grows_with_connections(
    servers,
):
    # 10 reconnects a second: 30 connections are spread over 3 s
    server = servers.start(**HERD_ENV, LIVE_RECONNECT_RATE="10", LIVE_RECONNECT_DELAY_MS="0")
    count, window = 30, 3_000
    async with contextlib.AsyncExitStack() as stack:
        subs = [await stack.enter_async_context(ws_subscriber(server.url)) for _ in range(count)]
        for sub in subs:
            await sub.until_frame("welcome")
        assert await anyio.to_thread.run_sync(server.terminate) == 0
        for sub in subs:
            await sub.until_ended(within=15)
    delays = [sub.of_type("reconnect")[0]["retryAfterMs"] for sub in subs]
    assert all(0 <= d <= window for d in delays), delays
    # drawn per connection over the whole window (not one instant, not a narrow band)
    assert max(delays) - min(delays) >= window / 2, sorted(delays)
    assert len(set(delays)) >= count * 2 // 3, sorted(delays)


async def test_an_epoch_change_spreads_the_resyncs_over_a_window_that_grows_with_connections(
    servers, database_url
):
    server = servers.start(**HERD_ENV, LIVE_RESYNC_RATE="10")
    count, window = 30, 3_000
    async with contextlib.AsyncExitStack() as stack:
        subs = [await stack.enter_async_context(ws_subscriber(server.url)) for _ in range(count)]
        for sub in subs:
            await sub.until_frame("welcome")
        await pg.execute(database_url, "UPDATE sync_meta SET epoch = 'restored'")
        for sub in subs:
            await sub.until_ended(within=15)
    frames = [sub.of_type("resync")[0] for sub in subs]
    assert {f["reason"] for f in frames} == {"epoch"}
    assert all(sub.close_code == 4000 for sub in subs)
    delays = [f["retryAfterMs"] for f in frames]
    assert all(0 <= d <= window for d in delays), delays
    assert max(delays) - min(delays) >= window / 2, sorted(delays)
    assert len(set(delays)) >= count * 2 // 3, sorted(delays)
