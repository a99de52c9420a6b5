"""A live session's promises, without a socket: contiguous frames, bounded memory,
heartbeats under load. Pure AnyIO, so it runs on asyncio and trio."""

from __future__ import annotations

import anyio
import msgpack
import pytest

from realtube_push.push.frames import Batch, Delta, frame_for
from realtube_push.push.protocol import CLOSE_RESYNC, Codec, Subscription
from realtube_push.push.session import Outgoing, Session, SessionLimits
from realtube_push.push.sinks import PullSink

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


def make_session(subscription: Subscription | None = None, **limits) -> Session:
    defaults = {
        "max_queued_frames": 4,
        "max_pending_deltas": 50,
        "heartbeat_seconds": 60.0,
        "empty_flush_seconds": 60.0,
    }
    session = Session(
        transport="ws",
        codec=Codec.MSGPACK,
        subscription=subscription or Subscription(),
        client_ip="127.0.0.1",
        limits=SessionLimits(**(defaults | limits)),
    )
    session.start_at("e", 0)
    return session


def batch(first: int, videos: list[str], *, last: int | None = None) -> Batch:
    deltas = [
        Delta(
            first + i,
            "video",
            "ab" + "0" * 62,
            {"videoId": v, "score": 50.0, "action": "update", "seq": first + i},
        )
        for i, v in enumerate(videos)
    ]
    return Batch("e", first, last if last is not None else first + len(videos) - 1, deltas)


async def next_outgoing(session: Session) -> Outgoing:
    """What a writer task would send next (sessions here have the default, pull, sink)."""
    assert isinstance(session.sink, PullSink)
    return await session.sink.next_outgoing(session)


async def next_frame(session: Session) -> dict:
    out = await next_outgoing(session)
    return msgpack.unpackb(out.data)


async def test_frames_arrive_contiguous_in_seq_order():
    session = make_session()
    session.offer(frame_for(batch(1, ["a", "b"]), session.subscription))
    session.offer(frame_for(batch(3, ["c"]), session.subscription))
    first, second = await next_frame(session), await next_frame(session)
    assert (first["from"], first["to"], second["from"], second["to"]) == (1, 2, 3, 3)


async def test_seqs_filtered_out_are_covered_by_an_empty_frame():
    other_bucket = Subscription(buckets=("ff",))
    session = make_session(other_bucket)
    session.offer(frame_for(batch(1, ["a", "b"]), other_bucket))  # nothing for this bucket
    wanted = Batch(
        "e",
        3,
        3,
        [Delta(3, "video", "ff" + "0" * 62, {"videoId": "z", "action": "update", "seq": 3})],
    )
    session.offer(frame_for(wanted, other_bucket))
    filler, frame = await next_frame(session), await next_frame(session)
    assert (filler["from"], filler["to"], filler["videos"]) == (1, 2, [])
    assert (frame["from"], frame["to"], [v["videoId"] for v in frame["videos"]]) == (3, 3, ["z"])


async def test_a_busy_client_gets_one_conflated_frame_with_the_latest_delta_per_video():
    session = make_session(max_queued_frames=2)
    for seq in range(1, 6):  # five updates of one video while the client does not read
        session.offer(frame_for(batch(seq, ["a"]), session.subscription))
    frame = await next_frame(session)
    assert (frame["from"], frame["to"]) == (1, 5)
    assert [v["seq"] for v in frame["videos"]] == [5]
    assert session.conflated == 4


async def test_a_backlog_past_the_bound_becomes_a_resync_and_is_dropped():
    session = make_session(max_queued_frames=1, max_pending_deltas=3)
    for seq in range(1, 6):
        session.offer(frame_for(batch(seq, [f"v{seq}"]), session.subscription))
    out = await next_outgoing(session)
    assert out.close_code == CLOSE_RESYNC
    assert msgpack.unpackb(out.data)["reason"] == "slow"
    assert session.queued_frames == 0


async def test_a_frame_overlapping_what_the_client_has_is_trimmed():
    session = make_session()
    session.start_at("e", 2)
    session.offer(frame_for(batch(1, ["a", "b", "c"]), session.subscription))
    frame = await next_frame(session)
    assert (frame["from"], frame["to"], [v["videoId"] for v in frame["videos"]]) == (3, 3, ["c"])


async def test_heartbeats_go_out_under_a_sustained_backlog():
    session = make_session(heartbeat_seconds=0.05)
    session.offer(frame_for(batch(1, ["a"]), session.subscription))
    session.offer(frame_for(batch(2, ["b"]), session.subscription))
    assert (await next_frame(session))["t"] == "deltas"
    await anyio.sleep(0.06)  # the heartbeat interval passes while a frame still waits
    assert (await next_frame(session))["t"] == "ping"
    assert (await next_frame(session))["t"] == "deltas"
