"""The WebSocket write path as the wire shows it: the default stack writes frames straight to
the socket (and says so), no data frame ever follows a Close, whoever sent it, and a frame
that breaks RFC 6455 is answered with the Close code the RFC gives it.

A raw TCP client (``tests/support/rawws.py``) sees every byte the server writes, in order,
and can leave the server's Close unanswered: the window in which a write after the Close
would show.
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import AsyncIterator, Iterator

import anyio
import msgpack
import pytest

from tests.support import ids
from tests.support.live import JSON, live_connections, log_position, metric, ws_subscriber
from tests.support.polling import eventually
from tests.support.rawws import BINARY, CLOSE, PING, TEXT, RawWebSocket, WireFrame, raw_ws
from tests.support.servers import Server
from tests.support.shared import module_servers
from tests.support.votes import cast_on_fresh_users

pytestmark = pytest.mark.anyio

MAX_MESSAGE_BYTES = 1024
WRITE_MODES = {"true": "direct", "false": "asgi"}


@pytest.fixture(scope="module", params=list(WRITE_MODES), ids=list(WRITE_MODES.values()))
def server(request, stack, template_database) -> Iterator[Server]:
    with module_servers(stack, template_database) as factory:
        yield factory.start(
            LIVE_DIRECT_WRITES=request.param, LIVE_MAX_MESSAGE_BYTES=str(MAX_MESSAGE_BYTES)
        )


def write_mode(server: Server) -> str:
    return WRITE_MODES[server.env["LIVE_DIRECT_WRITES"]]


def database_url(server: Server) -> str:
    return server.env["DATABASE_URL"]


@contextlib.asynccontextmanager
async def votes_flowing(server: Server) -> AsyncIterator[None]:
    """Votes on new videos, one after another, until the block ends: deltas keep coming."""

    async def cast_forever() -> None:
        while True:
            await cast_on_fresh_users(database_url(server), [ids.video_id()])
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(cast_forever)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


def decode(frame: WireFrame) -> dict:
    return msgpack.unpackb(frame.payload)


async def subscribed(ws: RawWebSocket) -> None:
    """Send the hello and read until a ``deltas`` frame arrived: the stream is live."""
    await ws.send_message(msgpack.packb({"t": "hello", "v": 1}))
    while True:
        frame = await ws.next_frame()
        assert frame is not None
        assert frame.opcode == BINARY, frame
        if decode(frame)["t"] == "deltas":
            return


async def until_close(ws: RawWebSocket) -> tuple[WireFrame, list[dict]]:
    """The server's Close, and the messages that came before it."""
    before = []
    while True:
        frame = await ws.next_frame()
        assert frame is not None, "the connection ended without a Close"
        if frame.opcode == CLOSE:
            return frame, before
        before.append(decode(frame))


async def fanned_out_past(server: Server, seq: int) -> None:
    """Wait until the server's hub has written deltas past ``seq`` to a fresh subscriber:
    every session of the server was offered them (a pass visits all)."""
    async with ws_subscriber(server.url) as witness:
        await witness.until_frame("welcome")
        await witness.wait_for(
            lambda: witness.cursor is not None and witness.cursor > seq + 3,
            within=30,
            what=f"deltas past {seq + 3}",
        )


async def test_the_default_stack_writes_websocket_frames_straight_to_the_socket(server):
    """A Hypercorn upgrade (or a middleware wrapping ``send``) that loses the fast path fails
    here instead of silently costing the measured throughput."""
    mode = write_mode(server)
    other = "asgi" if mode == "direct" else "direct"
    name = "realtube_live_ws_sessions_total"
    before = await metric(server.url, name, write_mode=mode)
    async with ws_subscriber(server.url) as sub:
        await sub.until_frame("welcome")
    assert await metric(server.url, name, write_mode=mode) == before + 1
    assert await metric(server.url, name, write_mode=other) == 0
    logged = [json.loads(line) for line in server.log().splitlines() if "ws_write_mode" in line]
    assert [line["write_mode"] for line in logged] == [mode]  # the process's first such session


async def test_no_data_frame_follows_the_servers_close_for_a_too_large_message(server):
    """Hypercorn closes with 1009 on a message over the limit before the app hears of it;
    while the client has not answered that Close, deltas go on being published and must
    not be written to this connection."""
    async with votes_flowing(server), raw_ws(server.port) as ws:
        await subscribed(ws)
        await ws.send_message(b"\x00" * (MAX_MESSAGE_BYTES + 1))
        close, before = await until_close(ws)
        assert close.close_code == 1009
        assert [m["t"] for m in before if m["t"] != "deltas"] == []  # no error frame first
        _, seq = await log_position(database_url(server))
        await fanned_out_past(server, seq)
        await ws.send_close(1009)  # the handshake completes: the server closes TCP
        after = await ws.frames_until_eof()
    assert [f for f in after if f.is_data] == [], after


async def test_no_data_frame_follows_the_close_that_answers_the_clients(server):
    async with votes_flowing(server), raw_ws(server.port) as ws:
        await subscribed(ws)
        await ws.send_close(1000)
        close, _ = await until_close(ws)
        after = await ws.frames_until_eof()
    assert close.close_code == 1000
    assert [f for f in after if f.is_data] == [], after


# (frame a client sends, the close code RFC 6455 gives the server's answer)
VIOLATIONS = {
    "unmasked": (dict(opcode=BINARY, payload=b"\x80", masked=False), 1002),
    "rsv1_without_extension": (dict(opcode=BINARY, payload=b"\x80", rsv=0b100), 1002),
    "rsv3": (dict(opcode=BINARY, payload=b"\x80", rsv=0b001), 1002),
    "reserved_opcode": (dict(opcode=0x3, payload=b"x"), 1002),
    "fragmented_ping": (dict(opcode=PING, payload=b"x", fin=False), 1002),
    "invalid_utf8_text": (dict(opcode=TEXT, payload=b'{"t":"\xff"}'), 1007),
    "close_code_out_of_range": (dict(opcode=CLOSE, payload=struct.pack("!H", 999)), 1002),
    "close_code_local_only": (dict(opcode=CLOSE, payload=struct.pack("!H", 1006)), 1002),
    "close_code_reserved": (dict(opcode=CLOSE, payload=struct.pack("!H", 1016)), 1002),
    "close_reason_not_utf8": (dict(opcode=CLOSE, payload=b"\x03\xe8\xff"), 1007),
}


@pytest.mark.parametrize(("frame", "code"), VIOLATIONS.values(), ids=VIOLATIONS.keys())
async def test_a_protocol_violating_frame_is_answered_with_its_close_code(server, frame, code):
    async with raw_ws(server.port) as ws:
        await subscribed_or_welcomed(ws)
        await ws.send_frame(**frame)
        close, _ = await until_close(ws)
        after = await ws.frames_until_eof()
    assert close.close_code == code
    assert after == []  # the server fails the connection: its TCP close follows at once
    await eventually(
        lambda: _no_sessions(server), timeout=10, what="the session ended with its connection"
    )


async def subscribed_or_welcomed(ws: RawWebSocket) -> None:
    """Send the hello and read the welcome (no deltas needed)."""
    await ws.send_message(msgpack.packb({"t": "hello", "v": 1}))
    frame = await ws.next_frame()
    assert frame is not None
    assert decode(frame)["t"] == "welcome", frame


async def _no_sessions(server: Server) -> bool:
    return await live_connections(server.url) == 0


async def test_the_message_limit_counts_a_text_messages_characters(server):
    """docs/protocol.md: the limit is a binary message's bytes, a text message's characters."""
    ping = {"t": "ping", "id": "é" * (MAX_MESSAGE_BYTES - 40)}
    text = json.dumps(ping, ensure_ascii=False)
    assert len(text) <= MAX_MESSAGE_BYTES < len(text.encode())
    async with raw_ws(server.port, protocol=JSON) as ws:
        await ws.send_message(json.dumps({"t": "hello", "v": 1}))
        await ws.send_message(text)
        while True:
            frame = await ws.next_frame()
            assert frame is not None
            assert frame.opcode == TEXT, frame
            message = json.loads(frame.payload)
            if message["t"] == "pong":
                break
    assert message["id"] == ping["id"]
