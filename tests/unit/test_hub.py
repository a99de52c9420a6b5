"""The hub's rolling fan-out, without sockets: sessions in push mode write into recording
sinks while batches arrive at random moments, some mid-pass, and some sessions stop
reading for a while. Every session must end with every delta exactly once, in contiguous
frames. Pure AnyIO, so it runs on asyncio and trio."""

from __future__ import annotations

from itertools import pairwise

import anyio
import msgpack
import pytest
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol, Opcode

from realtube_push.push.frames import Batch, Delta
from realtube_push.push.hub import PASS_CHUNK, Hub
from realtube_push.push.protocol import Codec, Subscription
from realtube_push.push.session import Session, SessionLimits
from realtube_push.push.sinks import PushSink
from tests.support.polling import eventually
from tests.support.properties import for_all

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


class RecordingSink:
    """What a socket would have received; ``congested`` while the test says the client
    is not reading."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.stalled = False

    def congested(self) -> bool:
        return self.stalled

    def write(self, message: bytes) -> None:
        self.data += message

    def abort(self) -> None:
        raise AssertionError("no session here stays stalled past the send timeout")

    def frames(self) -> list[dict]:
        reader = FrameProtocol(client=True, extensions=[])
        reader.receive_bytes(bytes(self.data))
        return [
            msgpack.unpackb(frame.payload)
            for frame in reader.received_frames()
            if frame.opcode is Opcode.BINARY
        ]


def session_with_sink(hub: Hub) -> tuple[Session, RecordingSink]:
    session = Session(
        transport="ws",
        codec=Codec.MSGPACK,
        subscription=Subscription(),
        client_ip="127.0.0.1",
        limits=SessionLimits(
            max_queued_frames=3,
            max_pending_deltas=100_000,
            heartbeat_seconds=3600,
            empty_flush_seconds=3600,
        ),
    )
    epoch, seq = hub.register(session)
    session.start_at(epoch, seq)
    sink = RecordingSink()
    session.attach(PushSink(sink, on_final=lambda: None, on_written=lambda size: None))
    return session, sink


def make_batch(first: int, size: int) -> Batch:
    deltas = [
        Delta(seq, "video", f"{seq:064x}", {"videoId": f"v{seq}", "score": 1.0, "seq": seq})
        for seq in range(first, first + size)
    ]
    return Batch("e", first, first + size - 1, deltas)


# per batch: its size, how many scheduler turns pass before the next one (0 = same turn,
# so it lands mid-pass), and whether one of the sessions stops reading meanwhile
scenario = st.lists(
    st.tuples(st.integers(1, 5), st.integers(0, 6), st.booleans()), min_size=1, max_size=25
)


async def test_every_session_gets_every_delta_once_in_contiguous_frames():
    async def check(steps: list[tuple[int, int, bool]]) -> None:
        hub = Hub(instance="t", pause_factor=0, max_pause_seconds=0)
        hub.reset("e", 0)
        # more sessions than one chunk, so passes yield and batches land half-way
        pairs = [session_with_sink(hub) for _ in range(2 * PASS_CHUNK + 3)]
        seq = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: hub.run(sweep_seconds=0.005))
            for i, (size, turns, stall) in enumerate(steps):
                pairs[(i * 37) % len(pairs)][1].stalled = stall
                hub.publish(make_batch(seq + 1, size))
                seq += size
                for _ in range(turns):
                    await anyio.lowlevel.checkpoint()
            for _, sink in pairs:
                sink.stalled = False
            await eventually(
                lambda: all(s.sent_to == seq for s, _ in pairs), timeout=3, what="all caught up"
            )
            tg.cancel_scope.cancel()

        for _, sink in pairs:
            frames = sink.frames()
            assert [f["t"] for f in frames] == ["deltas"] * len(frames)
            assert frames[0]["from"] == 1
            assert all(b["from"] == a["to"] + 1 for a, b in pairwise(frames))
            assert frames[-1]["to"] == seq
            seqs = [v["seq"] for f in frames for v in f["videos"]]
            assert seqs == list(range(1, seq + 1))

    await for_all(scenario, check, max_examples=15)


async def test_a_session_registered_between_passes_starts_at_the_head():
    hub = Hub(instance="t", pause_factor=0, max_pause_seconds=0)
    hub.reset("e", 0)
    early, early_sink = session_with_sink(hub)
    async with anyio.create_task_group() as tg:
        tg.start_soon(hub.run)
        hub.publish(make_batch(1, 3))
        await eventually(lambda: early.sent_to == 3, what="first batch out")
        late, late_sink = session_with_sink(hub)
        assert (late.sent_to, late.offered_to) == (3, 3)
        hub.publish(make_batch(4, 2))
        await eventually(lambda: late.sent_to == 5 and early.sent_to == 5, what="second batch")
        tg.cancel_scope.cancel()
    assert [(f["from"], f["to"]) for f in late_sink.frames()] == [(4, 5)]
    assert [v["seq"] for f in early_sink.frames() for v in f["videos"]] == [1, 2, 3, 4, 5]


async def test_lag_is_the_age_of_the_oldest_batch_not_yet_offered_to_every_session():
    hub = Hub(instance="t", pause_factor=0, max_pause_seconds=0)
    hub.reset("e", 0)
    pairs = [session_with_sink(hub) for _ in range(2 * PASS_CHUNK)]
    assert hub.lag() == 0

    hub.publish(make_batch(1, 2))
    await anyio.sleep(0.02)
    assert hub.lag() >= 0.02  # nobody has it yet: the connected clients wait that long

    async with anyio.create_task_group() as tg:
        tg.start_soon(hub.fan_out)
        for _ in range(2):
            await anyio.lowlevel.checkpoint()
        hub.publish(make_batch(3, 1))  # may land half-way: sessions passed over wait for it
    assert all(s.sent_to >= 2 for s, _ in pairs)
    assert (hub.lag() > 0) == any(s.sent_to < 3 for s, _ in pairs)

    await hub.fan_out()
    assert all(s.sent_to == 3 for s, _ in pairs)
    assert hub.lag() == 0
