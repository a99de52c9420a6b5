"""The two ways out of a session, without a server: a push sink writes only while its socket
takes more, hands the final notice over whatever the socket's state, and drops a client that
stays congested past the send timeout; a pull sink wakes its writer and reports a send stuck
in flight. Pure AnyIO, so it runs on asyncio and trio."""

from __future__ import annotations

import time

import anyio
import msgpack
import pytest
from wsproto.frame_protocol import FrameProtocol

from realtube_push.push.frames import Batch, Delta, frame_for
from realtube_push.push.protocol import CLOSE_RESTART, Codec, Subscription, reconnect
from realtube_push.push.session import Session, SessionLimits
from realtube_push.push.sinks import PullSink, PushSink

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


class Socket:
    """Records writes; ``full`` plays a client that does not read (or a Close already sent)."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.full = False
        self.aborted = False

    def congested(self) -> bool:
        return self.full

    def write(self, data: bytes) -> None:
        assert not self.full, "written while congested"
        self.written += data

    def abort(self) -> None:
        self.aborted = True

    def messages(self) -> list[dict]:
        reader = FrameProtocol(client=True, extensions=[])
        reader.receive_bytes(bytes(self.written))
        return [msgpack.unpackb(f.payload) for f in reader.received_frames()]


def make_session(**limits) -> Session:
    defaults = {
        "max_queued_frames": 4,
        "max_pending_deltas": 50,
        "heartbeat_seconds": 3600.0,
        "empty_flush_seconds": 3600.0,
        "send_timeout_seconds": 1.0,
    }
    session = Session(
        transport="ws",
        codec=Codec.MSGPACK,
        subscription=Subscription(),
        client_ip="127.0.0.1",
        limits=SessionLimits(**(defaults | limits)),
    )
    session.start_at("e", 0)
    return session


def frame(seq: int):
    delta = Delta(seq, "video", "ab" + "0" * 62, {"videoId": f"v{seq}", "seq": seq})
    return frame_for(Batch("e", seq, seq, [delta]), Subscription())


class Pushed:
    def __init__(self, session: Session) -> None:
        self.socket = Socket()
        self.finals = 0
        self.written_deltas = 0

        def on_final() -> None:
            self.finals += 1

        def on_written(size: int) -> None:
            self.written_deltas += size

        session.attach(PushSink(self.socket, on_final=on_final, on_written=on_written))


async def test_push_writes_at_once_and_queues_while_congested_then_catches_up():
    session = make_session()
    pushed = Pushed(session)
    assert session.offer(frame(1))  # written in the hub's pass
    pushed.socket.full = True
    assert not session.offer(frame(2))
    assert not session.offer(frame(3))
    assert session.queued_frames == 2
    pushed.socket.full = False
    session.tick(time.monotonic())
    assert [(m["from"], m["to"]) for m in pushed.socket.messages()] == [(1, 1), (2, 2), (3, 3)]
    assert pushed.written_deltas == 2  # the queued ones; the first was counted by the hub


async def test_push_hands_the_final_notice_over_even_when_the_socket_takes_nothing():
    session = make_session()
    pushed = Pushed(session)
    pushed.socket.full = True  # e.g. the server's WebSocket layer already sent a Close
    session.finish(reconnect(reason="shutdown", retry_after_ms=0), CLOSE_RESTART)
    assert pushed.finals == 1
    assert pushed.socket.written == b""
    final = session.final_outgoing()
    assert final is not None
    assert final.close_code == CLOSE_RESTART


async def test_push_aborts_a_client_congested_past_the_send_timeout():
    session = make_session(send_timeout_seconds=1.0)
    pushed = Pushed(session)
    pushed.socket.full = True
    session.offer(frame(1))
    now = time.monotonic()
    session.tick(now)
    session.tick(now + 0.5)
    assert not pushed.socket.aborted
    session.tick(now + 1.5)
    assert pushed.socket.aborted
    assert session.stalled


async def test_pull_wakes_its_writer_and_reports_a_send_stuck_in_flight():
    writer = PullSink()
    session = make_session()
    session.sink = writer
    stuck = []
    writer.on_stuck = lambda: stuck.append(True)
    async with anyio.create_task_group() as tg:
        got = []

        async def write() -> None:
            got.append(await writer.next_outgoing(session))

        tg.start_soon(write)
        await anyio.wait_all_tasks_blocked()
        session.offer(frame(1))
    assert got[0].frame is not None
    assert got[0].frame.last == 1
    writer.sending_since = 10.0
    session.tick(10.5)
    assert not stuck
    session.tick(11.5)
    assert stuck == [True]
    assert session.stalled


async def test_a_detached_session_takes_nothing_more():
    session = make_session()
    pushed = Pushed(session)
    session.detach()
    assert not session.offer(frame(1))
    session.answer_ping("x")
    assert pushed.socket.written == b""
