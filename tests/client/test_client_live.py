"""``LiveClient`` against real server processes: full sync, live deltas, resume, resync."""

from __future__ import annotations

import signal
from typing import Any

import anyio
import anyio.to_thread
import pytest

from realtube_push.client import LocalCache
from realtube_push.client.wire import entity_hash
from tests.support import ids
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio

DEADLINE = 10.0  # seconds for what involves reconnects, workers or several steps
LIVE_DEADLINE = 3.0  # vote -> score worker -> bus -> hub -> client (the target: under one)


def has_videos(*video_ids: str) -> Any:
    return lambda client: all(v in client.cache.videos for v in video_ids)


def lacks_videos(*video_ids: str) -> Any:
    return lambda client: not any(v in client.cache.videos for v in video_ids)


async def test_first_run_full_syncs_then_receives_a_vote_over_websocket(server, api, make_client):
    before = ids.video_id()
    await api.vote(server.url, before)
    changes: list[tuple[str, str, Any]] = []
    client = make_client(server.url, on_change=lambda *c: changes.append(c))
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.run)
        with anyio.fail_after(DEADLINE):
            await client.wait_for_status(lambda s: s.connected)
            await client.wait_until(has_videos(before))
        assert client.status.full_syncs == 1
        assert client.status.transport == "ws"
        live = ids.video_id()
        await api.vote(server.url, live)
        with anyio.fail_after(LIVE_DEADLINE):
            await client.wait_until(has_videos(live))
        status = client.status
        tg.cancel_scope.cancel()
    assert ("video", live, client.cache.videos[live]) in changes
    assert client.cache.videos[live]["totalVotes"] == 1
    assert status.transport == "ws"
    assert status.full_syncs == 1
    assert status.resyncs == 0


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_connection_outlives_the_idle_timeout_by_answering_heartbeats(
    start_server, api, make_client, transport
):
    server = await anyio.to_thread.run_sync(
        lambda: start_server(LIVE_HEARTBEAT_SECONDS="0.2", LIVE_IDLE_TIMEOUT_SECONDS="0.5")
    )
    client = make_client(server.url, transports=(transport,))
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.run)
        with anyio.fail_after(DEADLINE):
            # 8 heartbeats = 1.6 s: three idle timeouts the WebSocket would have died in
            await client.wait_for_status(lambda s: s.heartbeats >= 8)
        video = ids.video_id()
        await api.vote(server.url, video)
        with anyio.fail_after(DEADLINE):
            await client.wait_until(has_videos(video))
        status = client.status
        tg.cancel_scope.cancel()
    assert status.connected
    assert status.connections == 1


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_silent_connection_is_declared_dead_and_the_client_moves_on(
    start_server, api, make_client, transport
):
    beat = {"LIVE_HEARTBEAT_SECONDS": "0.2"}
    frozen = await anyio.to_thread.run_sync(lambda: start_server(**beat))
    spare = await anyio.to_thread.run_sync(lambda: start_server(**beat))
    # ``heartbeat`` is what the client assumes before a welcome says it (SSE sets its read
    # timeout from it when connecting)
    client = make_client([frozen.url, spare.url], transports=(transport,), heartbeat=0.2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.run)
        with anyio.fail_after(DEADLINE):
            await client.wait_for_status(lambda s: s.connected)
        frozen.process.send_signal(signal.SIGSTOP)  # alive to TCP, silent to the client
        try:
            with anyio.fail_after(DEADLINE):
                await client.wait_for_status(lambda s: s.connected and s.url == spare.url)
            video = ids.video_id()
            await api.vote(spare.url, video)
            with anyio.fail_after(DEADLINE):
                await client.wait_until(has_videos(video))
        finally:
            frozen.process.send_signal(signal.SIGCONT)
        status = client.status
        tg.cancel_scope.cancel()
    assert status.connections == 2
    assert status.full_syncs == 1


async def make_dataset(api, url: str) -> dict[str, Any]:
    """Flagged videos of one channel (so the channel is scored), a lone video, and a video
    whose only vote is withdrawn again (a ``remove`` delta)."""
    channel = ids.channel_id()
    flagged = [ids.video_id() for _ in range(3)]
    for video in flagged:
        for _ in range(7):  # 7 new users: enough weight for a score above 50
            await api.vote(url, video, channelId=channel)
    lone, withdrawn, user = ids.video_id(), ids.video_id(), ids.user_id()
    await api.vote(url, lone, category="ai_voiceover")
    await api.vote(url, withdrawn, user_id=user)
    return {"channel": channel, "present": [*flagged, lone], "withdrawn": withdrawn, "user": user}


@pytest.mark.parametrize("transport", ["ws", "sse", "poll"])
async def test_client_on_one_transport_converges_to_the_servers_full_document(
    server, api, make_client, transport
):
    client = make_client(server.url, transports=(transport,), poll_interval=0.1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.run)
        with anyio.fail_after(DEADLINE):
            await client.wait_for_status(lambda s: s.connected)
        data = await make_dataset(api, server.url)
        with anyio.fail_after(DEADLINE):
            await client.wait_until(has_videos(*data["present"], data["withdrawn"]))
            await client.wait_until(lambda c: data["channel"] in c.cache.channels)
        await api.unvote(server.url, data["withdrawn"], data["user"])
        with anyio.fail_after(DEADLINE):
            await client.wait_until(lacks_videos(data["withdrawn"]))
        doc = await api.settled(server.url, client)
        mine = api.comparable(client.cache.snapshot())
        status = client.status
        tg.cancel_scope.cancel()
    assert mine == api.comparable(doc)
    assert set(mine["videos"]) == set(data["present"])
    assert status.transport == transport
    assert status.full_syncs == 1


async def test_refused_live_channel_falls_back_to_polling(server, api, make_client):
    # an Origin outside CORS_ORIGINS: WebSocket and SSE answer 403, REST still serves
    client = make_client(
        server.url, headers={"Origin": "https://elsewhere.example"}, poll_interval=0.1
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.run)
        with anyio.fail_after(DEADLINE):
            await client.wait_for_status(lambda s: s.connected)
        video = ids.video_id()
        await api.vote(server.url, video)
        with anyio.fail_after(DEADLINE):
            await client.wait_until(has_videos(video))
        status = client.status
        tg.cancel_scope.cancel()
    assert status.transport == "poll"
    assert status.full_syncs == 1


def split_by_bucket(bucket: str, inside: int, outside: int) -> tuple[list[str], list[str]]:
    """Fresh video ids in and out of ``bucket``."""
    ins: list[str] = []
    outs: list[str] = []
    while len(ins) < inside or len(outs) < outside:
        video = ids.video_id()
        if entity_hash(video).startswith(bucket):
            if len(ins) < inside:
                ins.append(video)
        elif len(outs) < outside:
            outs.append(video)
    return ins, outs


@pytest.mark.parametrize("transport", ["ws", "sse", "poll"])
async def test_bucketed_client_gets_only_its_buckets_but_its_cursor_reaches_the_servers(
    server, api, make_client, transport
):
    inside, outside = split_by_bucket("a", 2, 4)
    client = make_client(server.url, buckets=["a"], transports=(transport,), poll_interval=0.1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.run)
        with anyio.fail_after(DEADLINE):
            await client.wait_for_status(lambda s: s.connected)
        for video in inside + outside:  # the others' deltas come last: only empty frames
            await api.vote(server.url, video)
        with anyio.fail_after(DEADLINE):
            await client.wait_until(has_videos(*inside))

        async def all_scored() -> bool:
            # the outside votes are posted last: wait until the server has scored them too,
            # or the client may settle at a cursor from before their deltas
            held = {v["videoId"] for v in (await api.full(server.url))["videos"]}
            return held >= set(inside + outside)

        await eventually(all_scored, timeout=DEADLINE, what="every vote scored")
        doc = await api.settled(server.url, client)
        epoch, last_seq = await api.last_seq(server.url)
        cursor = client.cache.cursor
        held = set(client.cache.videos)
        tg.cancel_scope.cancel()
    assert held == set(inside)
    assert {v["videoId"] for v in doc["videos"]} >= set(inside + outside)
    assert (cursor.epoch, cursor.seq) == (epoch, last_seq)


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_client_resumes_from_its_cursor_after_the_server_restarts(
    start_server, api, make_client, transport
):
    # The first instance asks its clients to wait 2.5-5 s before reconnecting: time enough
    # for votes to land on the second one, so the client must replay a gap on its return.
    first = await anyio.to_thread.run_sync(lambda: start_server(LIVE_RECONNECT_DELAY_MS="5000"))
    second = await anyio.to_thread.run_sync(start_server)
    # The client reports each wait before it starts it; once the first instance is stopping,
    # the report is held until the late votes are logged, so the gap exists before the client
    # can come back whatever the machine's speed (the wait alone was a race under load).
    gap_made = anyio.Event()
    hold_retries = False

    async def on_retry(retry: object) -> None:
        if hold_retries:
            await gap_made.wait()

    client = make_client([first.url, second.url], transports=(transport,), on_retry=on_retry)
    early = [ids.video_id() for _ in range(3)]
    late = [ids.video_id() for _ in range(3)]
    exit_codes: list[int] = []

    async def stop_first() -> None:
        # SIGTERM: the instance tells its clients to reconnect elsewhere (WS close 1012)
        exit_codes.append(await anyio.to_thread.run_sync(first.terminate))

    async with anyio.create_task_group() as tg:
        tg.start_soon(client.run)
        with anyio.fail_after(DEADLINE):
            await client.wait_for_status(lambda s: s.connected)
        for video in early:
            await api.vote(first.url, video)
        with anyio.fail_after(DEADLINE):
            await client.wait_until(has_videos(*early))
        gap_after = client.cache.cursor.seq
        hold_retries = True
        tg.start_soon(stop_first)
        with anyio.fail_after(DEADLINE):
            await client.wait_for_status(lambda s: not s.connected)
        for video in late:
            await api.vote(second.url, video)
        await eventually(
            lambda: _seq_at_least(api, second.url, gap_after + len(late)), what="late votes"
        )
        assert not client.status.connected  # held before waiting out retryAfterMs
        gap_made.set()
        with anyio.fail_after(DEADLINE):
            await client.wait_until(has_videos(*late))
        doc = await api.settled(second.url, client)
        mine = api.comparable(client.cache.snapshot())
        status = client.status
        tg.cancel_scope.cancel()
    assert exit_codes == [0]
    assert mine == api.comparable(doc)
    assert status.url == second.url
    assert status.resume == "replay"
    assert status.full_syncs == 1  # resumed from its cursor: no second full sync
    assert status.resyncs == 0
    assert status.connections == 2


async def _seq_at_least(api, url: str, seq: int) -> bool:
    return (await api.last_seq(url))[1] >= seq


@pytest.mark.parametrize("transport", ["ws", "sse", "poll"])
async def test_cursor_of_another_epoch_leads_to_a_full_sync(server, api, make_client, transport):
    real = ids.video_id()
    await api.vote(server.url, real)
    stale = LocalCache()
    stale.apply_full(
        {
            "videos": [{"videoId": "ghost", "score": 99.0, "action": "update"}],
            "channels": [],
            "cursor": 1,
            "epoch": "not-the-servers-epoch",
        }
    )
    client = make_client(server.url, cache=stale, transports=(transport,), poll_interval=0.1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.run)
        with anyio.fail_after(DEADLINE):
            await client.wait_until(has_videos(real))
            status = await client.wait_for_status(lambda s: s.connected)
        tg.cancel_scope.cancel()
    assert "ghost" not in client.cache.videos
    assert status.cursor.epoch != "not-the-servers-epoch"
    assert status.full_syncs == 1
    assert status.resyncs >= 1
    # WebSocket and SSE name the reason; a REST page only says "resync"
    assert status.last_resync_reason == ("resync" if transport == "poll" else "epoch")
