"""The live channel delivers every committed change, in order, with the log's seq.

Real server processes (two sharing PostgreSQL and Redis where it matters), real sockets,
and the sync log in PostgreSQL as the reference for what should arrive.
"""

from __future__ import annotations

import dataclasses
import hashlib

import httpx
import pytest

from realtube_push.config import Settings
from realtube_push.publisher import Publisher
from realtube_push.services import Services, open_services
from realtube_push.store import synclog
from realtube_push.workers import score
from tests.support import ids
from tests.support.api import vote
from tests.support.live import (
    Subscriber,
    server_dataset,
    settled_position,
    sse_subscriber,
    sync_log,
    ws_subscriber,
)
from tests.support.votes import cast

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_server_crashes")]

FAST_FLUSH = "0.1"


def bucket_of(video_id: str) -> str:
    """What a client computes for a video: SHA-256 of its id, in hex."""
    return hashlib.sha256(video_id.encode()).hexdigest()


def received(sub: Subscriber) -> list[tuple[int, str]]:
    return [(d["seq"], d["videoId"]) for d in sub.video_deltas]


@pytest.mark.parametrize("direct_writes", ["true", "false"], ids=["direct", "asgi"])
async def test_a_vote_on_one_instance_reaches_ws_and_sse_subscribers_on_another_in_order(
    servers, database_url, direct_writes
):
    a, b = servers.start(), servers.start(LIVE_DIRECT_WRITES=direct_writes)
    videos = [ids.video_id() for _ in range(6)]
    async with (
        httpx.AsyncClient(base_url=a.url) as api,
        ws_subscriber(b.url) as ws,
        sse_subscriber(b.url) as sse,
    ):
        await ws.until_frame("welcome")
        await sse.until_frame("welcome")
        start = ws.cursor
        assert start == sse.cursor == 0
        for video in videos:
            await vote(api, video)
            for sub in (ws, sse):  # each vote arrives before the next is cast
                await sub.wait_for(lambda s=sub, v=video: v in s.dataset.videos, within=3)
        last = await settled_position(database_url)
        await ws.until_seq(last)
        await sse.until_seq(last)

    log = await sync_log(database_url, after=start)
    assert sorted(row.entity_id for row in log) == sorted(videos)
    expected = [(row.seq, row.entity_id) for row in log]
    assert received(ws) == expected
    assert received(sse) == expected
    # the delta is the log's payload, with its seq
    payloads = {row.seq: {**row.payload, "seq": row.seq} for row in log}
    assert all(d == payloads[d["seq"]] for d in ws.video_deltas + sse.video_deltas)
    # the SSE event id is the cursor
    assert sse.last_event_id == str(last)
    assert (await server_dataset(database_url)).state() == ws.dataset.state() == sse.dataset.state()


def videos_in_and_out(buckets: tuple[str, ...], inside: int, outside: int) -> tuple[list, list]:
    """Fresh video ids: ``inside`` whose hash starts with a bucket, ``outside`` that do not."""
    ins: list[str] = []
    outs: list[str] = []
    while len(ins) < inside or len(outs) < outside:
        video = ids.video_id()
        if bucket_of(video).startswith(buckets):
            if len(ins) < inside:
                ins.append(video)
        elif len(outs) < outside:
            outs.append(video)
    return ins, outs


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_a_bucket_subscription_gets_only_its_videos_and_stays_complete(
    servers, database_url, transport
):
    server = servers.start(LIVE_EMPTY_FLUSH_SECONDS=FAST_FLUSH)
    buckets = (bucket_of(ids.video_id())[:1], bucket_of(ids.video_id())[:2])
    inside, outside = videos_in_and_out(buckets, inside=3, outside=5)
    open_sub = ws_subscriber if transport == "ws" else sse_subscriber
    async with (
        httpx.AsyncClient(base_url=server.url) as api,
        open_sub(server.url, buckets=list(buckets)) as sub,
    ):
        await sub.until_frame("welcome")
        for video in [outside[0], inside[0], outside[1], inside[1], inside[2]]:
            await vote(api, video)
        await sub.until_seq(await settled_position(database_url))
        # a tail of changes the client does not want: its cursor still gets there, promptly
        for video in outside[2:]:
            await vote(api, video)
        last = await settled_position(database_url)
        await sub.until_seq(last, within=float(FAST_FLUSH) + 1.5)

    log = await sync_log(database_url)
    wanted = [(r.seq, r.entity_id) for r in log if bucket_of(r.entity_id).startswith(buckets)]
    assert received(sub) == wanted
    assert all(bucket_of(d["videoId"]).startswith(buckets) for d in sub.video_deltas)
    assert {v for _, v in wanted} == set(inside)
    frames = sub.of_type("deltas")
    assert frames[-1]["to"] == last
    assert frames[-1]["videos"] == []  # the empty frame that carried the cursor over the tail


class MessageLosingPublisher(Publisher):
    """The server's publisher, but the pub/sub message of every batch is lost."""

    async def publish(self, batch: synclog.AppendedBatch) -> None:
        return None


async def cast_and_score(svc: Services, videos: list[str]) -> None:
    """Votes cast straight into PostgreSQL, scored by one batch of this process's worker."""
    for video in videos:
        await cast(svc.pool, video, ids.user_id())
    assert await score.process_batch(svc) == len(videos)


async def test_a_subscriber_still_gets_deltas_whose_pubsub_message_was_lost(
    servers, database_url, stack
):
    # no score worker in the server: this test's process writes the log, and decides what
    # reaches pub/sub
    server = servers.start(RUN_WORKERS="false", LIVE_TAIL_CHECK_SECONDS="0.1")
    settings = Settings(
        database_url=database_url,
        redis_url=stack.redis_url,
        redis_namespace=servers.namespace,
        environment="test",
    )
    async with open_services(settings) as svc, ws_subscriber(server.url) as sub:
        lossy = dataclasses.replace(
            svc,
            publisher=MessageLosingPublisher(svc.redis, svc.keys, svc.cache, svc.redis_outage),
        )
        await sub.until_frame("welcome")

        # the last message is lost: the tail check notices the log moved and backfills
        first = [ids.video_id() for _ in range(2)]
        await cast_and_score(lossy, first)
        await sub.until_seq(2, within=2)

        # a lost message followed by a delivered one: the gap is filled before delivery
        lost, delivered = [ids.video_id() for _ in range(3)], [ids.video_id()]
        await cast_and_score(lossy, lost)
        await cast_and_score(svc, delivered)
        await sub.until_seq(6, within=2)

    log = await sync_log(database_url)
    assert {r.entity_id for r in log[:2]} == set(first)
    assert received(sub) == [(r.seq, r.entity_id) for r in log]
    assert [r.seq for r in log] == [1, 2, 3, 4, 5, 6]
    async with httpx.AsyncClient(base_url=server.url) as client:
        live = (await client.get("/health/ready")).json()["checks"]["live"]
    assert live["backfills"] >= 2
