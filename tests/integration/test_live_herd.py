"""Herds: many clients resuming, reconnecting or resyncing at once (docs/protocol.md), and
the full syncs that follow a restore (docs/api.md).

- Clients resuming from the same cursor share the replay: each page of the log is read from
  storage once (``realtube_live_replay_pages_total``), not once per client, and the log's
  position is not read per handshake; every client still gets every delta, once, in order.
- A herd whose instance is killed (no notice) comes back to another instance with its
  cursors while votes keep flowing, and nothing is lost.
- A shutdown's ``reconnect`` notices and an epoch change's ``resync`` frames carry delays
  drawn over a window that grows with the number of connections: the herd comes back
  spread over that window, not in one instant.
- ``GET /api/sync/full`` is served from memory: a burst costs no database query per request
  (``realtube_full_sync_queries_total``), and a rebuild or a restore is served soon after.
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
from realtube_push.push.replay import PAGE, frame_end
from realtube_push.store import db, synclog
from realtube_push.store.synclog import LogEntry
from tests.support import ids, pg
from tests.support.api import vote
from tests.support.live import (
    JSON,
    MSGPACK,
    Dataset,
    Subscriber,
    full_sync,
    log_position,
    metric,
    server_dataset,
    server_errors,
    settled_position,
    sse_subscriber,
    sync_log,
    ws_subscriber,
)
from tests.support.polling import eventually
from tests.support.servers import Server

pytestmark = pytest.mark.anyio

HERD = 24
GAP = 2_500  # deltas the herd missed: three pages or four, depending on where it starts

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


def frames_of_replay(after: int, upto: int) -> int:
    """How many frames the replay of ``after+1 .. upto`` is cut into (push/replay.py)."""
    frames = 0
    while after < upto:
        after, frames = frame_end(after, upto), frames + 1
    return frames


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
    pages, frames = pages_spanned(cursor, target), frames_of_replay(cursor, target)
    read = {s: after[s] - before[s] for s in after}
    # each page came from PostgreSQL once (Redis never held these deltas), then was shared
    assert read["postgres"] <= pages, read
    assert read["postgres"] + read["redis"] + read["shared"] == HERD * frames, read
    # each frame built once, whatever the codec: encoded once per codec, not per client
    assert read["built"] <= frames, read
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


async def full_sync_queries(server: Server) -> float:
    name = "realtube_full_sync_queries_total"
    return sum([await metric(server.url, name, query=q) for q in ("check", "load", "build")])


async def test_a_herd_of_full_syncs_is_served_from_memory_with_one_etag(servers, database_url):
    # the worker rebuilds within 0.2 s of a change; the route looks at the stored blob at
    # most every 5 s (so on a slow machine the burst still fits in one period)
    server = servers.start(
        **HERD_ENV, FULL_BLOB_INTERVAL_SECONDS="0.2", FULL_BLOB_CHECK_SECONDS="5"
    )
    gzip_accepted = {"Accept-Encoding": "gzip"}
    limits = httpx.Limits(max_connections=HERD * 8)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
        first = await client.get("/api/sync/full", headers=gzip_accepted)
        assert first.status_code == 200
        etag = first.headers["etag"]
        # the blob held now is the one the burst gets (the log does not move meanwhile)
        await eventually(lambda: _serves(client, etag), timeout=15, what="the blob served steadily")
        before = await full_sync_queries(server)
        answers: list[httpx.Response] = []

        async def fetch(headers: dict[str, str]) -> None:
            answers.append(await client.get("/api/sync/full", headers=headers))

        async with anyio.create_task_group() as tg:
            for index in range(HERD * 8):
                tg.start_soon(fetch, gzip_accepted if index % 4 else {})
        spent = await full_sync_queries(server) - before

        assert [r.status_code for r in answers] == [200] * len(answers)
        assert {r.headers["etag"] for r in answers} == {etag}
        assert {r.json()["cursor"] for r in answers} == {first.json()["cursor"]}
        assert spent <= 2  # at most one look at the stored blob (and a load), not one each

        revalidated = await client.get("/api/sync/full", headers={"If-None-Match": etag})
        assert revalidated.status_code == 304

        # a vote moves the log: the worker rebuilds, and the new document is served
        await vote(client, ids.video_id())
        await eventually(
            lambda: _serves_another(client, etag), timeout=15, what="a new ETag after a rebuild"
        )


async def _serves(client: httpx.AsyncClient, etag: str) -> bool:
    return (await client.get("/api/sync/full")).headers.get("etag") == etag


async def _serves_another(client: httpx.AsyncClient, etag: str) -> bool:
    r = await client.get("/api/sync/full", headers={"If-None-Match": etag})
    return r.status_code == 200 and r.headers["etag"] != etag


async def test_after_a_restore_the_full_sync_serves_the_new_epoch_at_once(servers, database_url):
    # the worker would rebuild only a minute later; the clients told to resync need it now
    server = servers.start(**HERD_ENV, FULL_BLOB_INTERVAL_SECONDS="60")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        assert (await client.get("/api/sync/full")).json()["epoch"] != "restored"
        await pg.execute(database_url, "UPDATE sync_meta SET epoch = 'restored'")
        await eventually(
            lambda: _in_epoch(client, "restored"), timeout=15, what="a blob of the new epoch"
        )


async def _in_epoch(client: httpx.AsyncClient, epoch: str) -> bool:
    return (await client.get("/api/sync/full")).json()["epoch"] == epoch


async def test_a_herd_whose_instance_is_killed_resumes_on_another_without_loss(
    servers, database_url
):
    a, b = servers.start(**HERD_ENV), servers.start(**HERD_ENV)
    stop_voting, voting_stopped = anyio.Event(), anyio.Event()

    async def votes_keep_flowing() -> None:
        try:
            async with httpx.AsyncClient(base_url=b.url) as api:
                while not stop_voting.is_set():
                    await vote(api, ids.video_id())
                    with anyio.move_on_after(0.03):
                        await stop_voting.wait()
        finally:
            voting_stopped.set()

    count = 16
    async with httpx.AsyncClient(base_url=a.url) as api:
        datasets = [await full_sync(api) for _ in range(count)]
    synced_to = [d.seq for d in datasets]
    before: list[Subscriber] = []
    after: list[Subscriber] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(votes_keep_flowing)
        async with contextlib.AsyncExitStack() as stack:
            for index, dataset in enumerate(datasets):
                before.append(await stack.enter_async_context(herd_member(index, a, dataset)))
            for sub in before:
                await sub.wait_for(lambda s=sub: len(s.video_deltas) >= 2, what="2 deltas")
            await anyio.to_thread.run_sync(a.kill)  # no notice: the clients find out alone
            for sub in before:
                await sub.until_ended(within=15)
        # they all come back at once, to the other instance, with their cursors
        async with contextlib.AsyncExitStack() as stack:
            for index, sub in enumerate(before):
                after.append(await stack.enter_async_context(herd_member(index, b, sub.dataset)))
            for sub in after:
                await sub.until_frame("welcome")
            stop_voting.set()
            # a vote still in flight would land after the head is read: wait for it
            await voting_stopped.wait()
            last = await settled_position(database_url)
            for sub in after:
                await sub.until_seq(last, within=15)

    truth = await server_dataset(database_url)
    for first, second, synced in zip(before, after, synced_to, strict=True):
        assert second.welcome is not None, second.summary()
        assert second.welcome["resume"] in ("replay", "live"), second.summary()
        assert not second.of_type("resync"), second.summary()
        # every delta after its full sync, exactly once and in order, across the two instances
        log = await sync_log(database_url, after=synced)
        got = [(d["seq"], d["videoId"]) for d in first.video_deltas + second.video_deltas]
        assert got == [(r.seq, r.entity_id) for r in log if r.kind == "video"]
        assert second.dataset.state() == truth.state()
    assert not server_errors(b.log())
