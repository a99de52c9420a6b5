"""The live endpoints under bad input and abuse: every case ends with the documented error
frame and close code (or HTTP status), never a crash, and leaves the server serving, with
no session or task left behind."""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Iterator

import anyio
import anyio.to_thread
import asyncpg
import httpx
import msgpack
import pytest
from httpx_ws import WebSocketUpgradeError

from realtube_push.store import scores
from tests.support import ids
from tests.support.live import (
    JSON,
    MSGPACK,
    SSE_PATH,
    Refused,
    StalledClient,
    encode,
    live_connections,
    metric,
    open_ws,
    rss_bytes,
    send,
    server_errors,
    settled_position,
    sse_subscriber,
    until_closed,
    ws_subscriber,
)
from tests.support.polling import eventually
from tests.support.servers import Server
from tests.support.shared import module_servers
from tests.support.votes import cast_on_fresh_users

pytestmark = pytest.mark.anyio

MAX_MESSAGE_BYTES = 1024
MAX_PER_IP = 3
HELLO = {"t": "hello", "v": 1}


# WebSocket frames go straight to the socket ("push mode") unless the socket cannot be
# reached (HTTP/2) or LIVE_DIRECT_WRITES is off; both paths must keep every promise here
WRITE_PATHS = ["true", "false"]


@pytest.fixture(scope="module", params=WRITE_PATHS, ids=["direct", "asgi"])
def server(request, stack, template_database) -> Iterator[Server]:
    with module_servers(stack, template_database) as factory:
        yield factory.start(
            LIVE_DIRECT_WRITES=request.param,
            LIVE_MAX_MESSAGE_BYTES=str(MAX_MESSAGE_BYTES),
            LIVE_MAX_CONNECTIONS_PER_IP=str(MAX_PER_IP),
            LIVE_HELLO_TIMEOUT_SECONDS="0.3",
            LIVE_HEARTBEAT_SECONDS="0.2",
            LIVE_IDLE_TIMEOUT_SECONDS="0.8",
        )


async def no_live_connections(server: Server) -> bool:
    return await live_connections(server.url) == 0


async def assert_unharmed(server: Server) -> None:
    """The server still serves a normal client, holds no session, and logged no crash."""
    async with ws_subscriber(server.url) as sub:
        await sub.until_frame("welcome")
    async with sse_subscriber(server.url) as sub:
        await sub.until_frame("welcome")
    await eventually(lambda: no_live_connections(server), what="no live connection left")
    assert not server_errors(server.log())


# --------------------------------------------------------------------------- bad messages


def packed(frame: object) -> bytes:
    return msgpack.packb(frame)


BAD_MESSAGES = [
    pytest.param(MSGPACK, [b"\xc1"], "BAD_FRAME", 4001, id="malformed-msgpack"),
    pytest.param(MSGPACK, [b"\x82\xa1t"], "BAD_FRAME", 4001, id="truncated-msgpack"),
    pytest.param(JSON, ['{"t": "hello",'], "BAD_FRAME", 4001, id="malformed-json"),
    pytest.param(MSGPACK, [packed([1, 2, 3])], "BAD_FRAME", 4001, id="not-a-map"),
    pytest.param(JSON, ['"hello"'], "BAD_FRAME", 4001, id="json-not-an-object"),
    pytest.param(MSGPACK, [packed({"type": "hello"})], "BAD_FRAME", 4001, id="no-type"),
    pytest.param(MSGPACK, [packed({1: "hello"})], "BAD_FRAME", 4001, id="non-string-key"),
    pytest.param(MSGPACK, [packed({"t": "ping"})], "HELLO_REQUIRED", 4001, id="no-hello-first"),
    pytest.param(
        MSGPACK,
        [packed(HELLO), packed({"t": "subscribe"})],
        "UNKNOWN_TYPE",
        4001,
        id="unknown-type",
    ),
    pytest.param(
        JSON,
        [encode(HELLO, JSON), '{"t": 7}'],
        "BAD_FRAME",
        4001,
        id="json-non-string-type-after-hello",
    ),
    pytest.param(MSGPACK, [packed(HELLO), b"\xc1"], "BAD_FRAME", 4001, id="malformed-after-hello"),
    pytest.param(
        MSGPACK, [packed(HELLO), packed(["ping"])], "BAD_FRAME", 4001, id="not-a-map-after-hello"
    ),
]

BAD_HELLOS = [
    pytest.param({**HELLO, "buckets": ["xyz"]}, id="bucket-not-hex"),
    pytest.param({**HELLO, "buckets": ["abcde"]}, id="bucket-too-long"),
    pytest.param({**HELLO, "buckets": []}, id="no-buckets"),
    pytest.param({**HELLO, "buckets": "ab"}, id="buckets-not-a-list"),
    pytest.param(
        {**HELLO, "buckets": [f"{i:02x}" for i in range(256)] + ["abc"]}, id="too-many-buckets"
    ),
    pytest.param({**HELLO, "seq": 4}, id="seq-without-epoch"),
    pytest.param({**HELLO, "epoch": "e"}, id="epoch-without-seq"),
    pytest.param({**HELLO, "epoch": "e", "seq": -1}, id="negative-seq"),
    pytest.param({**HELLO, "epoch": "e", "seq": True}, id="boolean-seq"),
    pytest.param({**HELLO, "epoch": 5, "seq": 1}, id="epoch-not-a-string"),
    pytest.param({**HELLO, "channels": "yes"}, id="channels-not-a-boolean"),
    pytest.param({**HELLO, "v": 2}, id="unknown-version"),
]


@pytest.mark.parametrize(("codec", "messages", "code", "close"), BAD_MESSAGES)
async def test_a_bad_message_gets_its_error_frame_and_close_code(
    server, codec, messages, code, close
):
    async with open_ws(server.url, codec=codec) as ws:
        for message in messages:
            await send(ws, message)
        frames, close_code = await until_closed(ws)
    errors = [f for f in frames if f["t"] == "error"]
    assert [e["code"] for e in errors] == [code], frames
    assert close_code == close
    await assert_unharmed(server)


@pytest.mark.parametrize("hello", BAD_HELLOS)
async def test_a_bad_hello_is_refused_with_bad_hello(server, hello):
    async with open_ws(server.url) as ws:
        await send(ws, packed(hello))
        frames, close_code = await until_closed(ws)
    assert [(f["t"], f.get("code")) for f in frames] == [("error", "BAD_HELLO")]
    assert close_code == 4001
    await assert_unharmed(server)


@pytest.mark.parametrize("after_hello", [False, True], ids=["as-hello", "after-hello"])
async def test_an_oversized_message_closes_with_1009(server, after_hello):
    big = packed({"t": "hello", "v": 1, "pad": "x" * MAX_MESSAGE_BYTES})
    async with open_ws(server.url) as ws:
        if after_hello:
            await send(ws, packed(HELLO))
        await send(ws, big)
        frames, close_code = await until_closed(ws)
    assert close_code == 1009
    errors = [f for f in frames if f["t"] == "error"]
    assert all(e["code"] == "TOO_LARGE" for e in errors), frames
    await assert_unharmed(server)


async def test_a_message_of_exactly_the_limit_is_accepted(server):
    hello = {**HELLO, "pad": ""}
    hello["pad"] = "x" * (MAX_MESSAGE_BYTES - len(packed(hello)) - 2)  # str8 header: 2 bytes
    assert len(packed(hello)) == MAX_MESSAGE_BYTES
    async with open_ws(server.url) as ws:
        await send(ws, packed(hello))
        frame = msgpack.unpackb(await ws.receive_bytes(timeout=5))
    assert frame["t"] == "welcome"
    await assert_unharmed(server)


async def test_no_hello_within_the_timeout_gets_hello_required(server):
    async with open_ws(server.url) as ws:
        frames, close_code = await until_closed(ws, within=3)
    assert [(f["t"], f.get("code")) for f in frames] == [("error", "HELLO_REQUIRED")]
    assert close_code == 4001
    await assert_unharmed(server)


async def test_a_silent_client_is_closed_as_idle(server):
    async with open_ws(server.url) as ws:
        await send(ws, packed(HELLO))
        frames, close_code = await until_closed(ws, within=3)  # pings go unanswered
    assert frames[0]["t"] == "welcome"
    assert any(f["t"] == "ping" for f in frames)
    assert (frames[-1]["t"], frames[-1].get("code")) == ("error", "IDLE")
    assert close_code == 4002
    await assert_unharmed(server)


async def test_a_client_ping_is_answered_with_its_id(server):
    async with open_ws(server.url) as ws:
        await send(ws, packed(HELLO))
        await send(ws, packed({"t": "ping", "id": 42}))
        with anyio.fail_after(5):
            while True:
                frame = msgpack.unpackb(await ws.receive_bytes())
                if frame["t"] == "pong":
                    break
    assert frame == {"t": "pong", "id": 42}
    await assert_unharmed(server)


# --------------------------------------------------------------------------- at the door


@pytest.mark.parametrize("origin", ["https://evil.example", "chrome-extension", "null"])
async def test_a_foreign_origin_is_refused_with_403(server, origin):
    with pytest.raises(WebSocketUpgradeError) as refused:
        async with open_ws(server.url, headers={"Origin": origin}):
            pass
    assert refused.value.response.status_code == 403
    with pytest.raises(Refused) as sse_refused:
        async with sse_subscriber(server.url, headers={"Origin": origin}):
            pass
    assert sse_refused.value.response.status_code == 403
    assert sse_refused.value.response.json()["error"]["code"] == "UNAUTHORIZED"
    await assert_unharmed(server)


async def test_an_extension_origin_is_allowed(server):
    for origin in ("chrome-extension://abcdefghijklmnop", "moz-extension://x"):
        async with ws_subscriber(server.url, headers={"Origin": origin}) as sub:
            await sub.until_frame("welcome")
        async with sse_subscriber(server.url, headers={"Origin": origin}) as sub:
            await sub.until_frame("welcome")
    await assert_unharmed(server)


async def test_permessage_deflate_is_declined(server):
    """A browser offers compression; the server never compresses its shared frames, so it
    declines (and keeps no zlib state per connection), and the stream works uncompressed."""
    port = int(server.url.rsplit(":", 1)[1])
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        key = base64.b64encode(os.urandom(16)).decode()
        await stream.send(
            (
                f"GET /api/live/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
            ).encode()
        )
        response = b""
        with anyio.fail_after(5):
            while b"\r\n\r\n" not in response:
                response += await stream.receive()
    head = response.split(b"\r\n\r\n")[0].decode().lower()
    assert head.startswith("http/1.1 101")
    assert "sec-websocket-extensions" not in head
    # and a client that asked for it is served all the same
    async with ws_subscriber(
        server.url, headers={"Sec-WebSocket-Extensions": "permessage-deflate"}
    ) as sub:
        await sub.until_frame("welcome")
    await assert_unharmed(server)


async def connect_without_hello(server: Server) -> int:
    """Open a WebSocket, send nothing; the handshake's status (101, or the refusal)."""
    try:
        async with open_ws(server.url) as ws:
            await until_closed(ws, within=3)  # the server gives up waiting for the hello
            return 101
    except WebSocketUpgradeError as exc:
        return exc.response.status_code


async def test_a_flood_of_connections_from_one_address_is_refused_with_429(server):
    assert await no_live_connections(server)
    statuses: list[int] = []

    async def connect() -> None:
        statuses.append(await connect_without_hello(server))

    async with anyio.create_task_group() as tg:  # all at once: handshakes, no hello yet
        for _ in range(3 * MAX_PER_IP):
            tg.start_soon(connect)
    assert sorted(statuses) == [101] * MAX_PER_IP + [429] * (2 * MAX_PER_IP)
    await assert_unharmed(server)


async def test_connections_past_the_per_address_cap_get_429_on_both_transports(server):
    assert await no_live_connections(server)
    async with ws_subscriber(server.url) as a, sse_subscriber(server.url) as b:
        await a.until_frame("welcome")
        await b.until_frame("welcome")
        async with ws_subscriber(server.url) as c:
            await c.until_frame("welcome")
            with pytest.raises(WebSocketUpgradeError) as ws_refused:
                async with open_ws(server.url):
                    pass
            with pytest.raises(Refused) as sse_refused:
                async with sse_subscriber(server.url):
                    pass
        # one left: there is room again
        async with ws_subscriber(server.url) as d:
            await d.until_frame("welcome")
    assert ws_refused.value.response.status_code == 429
    body = sse_refused.value.response
    assert body.status_code == 429
    assert body.json()["error"]["code"] == "RATE_LIMITED"
    assert body.headers["Retry-After"]
    await assert_unharmed(server)


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({"seq": "5"}, {}),
        ({"epoch": "e"}, {}),
        ({"epoch": "e", "seq": "-1"}, {}),
        ({"epoch": "e", "seq": "abc"}, {}),
        ({"epoch": "e", "seq": "1" * 19}, {}),
        ({"epoch": "e"}, {"Last-Event-ID": "x1"}),
        ({"buckets": "xyz"}, {}),
        ({"buckets": "ab,"}, {}),
        ({"buckets": ",".join(f"{i:03x}" for i in range(257))}, {}),
        ({"channels": "maybe"}, {}),
        ({"epoch": "e" * 65, "seq": "1"}, {}),
    ],
    ids=[
        "seq-without-epoch",
        "epoch-without-seq",
        "negative-seq",
        "seq-not-a-number",
        "seq-too-long",
        "bad-last-event-id",
        "bucket-not-hex",
        "empty-bucket",
        "too-many-buckets",
        "channels-not-a-boolean",
        "epoch-too-long",
    ],
)
async def test_bad_sse_parameters_are_400_in_the_rest_error_format(server, params, headers):
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.get(SSE_PATH, params=params, headers=headers)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["code"] == "INVALID_PARAM"
    assert error["message"]
    await assert_unharmed(server)


# --------------------------------------------------------------------------- a stalled client


async def cast_many(database_url: str, count: int) -> list[str]:
    """Votes on ``count`` fresh videos, straight into PostgreSQL (NOTIFY wakes the worker)."""
    videos = [ids.video_id() for _ in range(count)]
    await cast_on_fresh_users(database_url, videos)
    await settled_position(database_url)
    return videos


@pytest.mark.parametrize("direct_writes", WRITE_PATHS, ids=["direct", "asgi"])
async def test_a_stalled_client_is_dropped_with_bounded_memory_while_others_keep_up(
    servers, database_url, direct_writes
):
    server = servers.start(
        LIVE_DIRECT_WRITES=direct_writes,
        LIVE_MAX_QUEUED_FRAMES="2",
        LIVE_MAX_PENDING_DELTAS="50",
        LIVE_SEND_TIMEOUT_SECONDS="1",
    )
    videos = await cast_many(database_url, 500)
    conn = await asyncpg.connect(database_url)

    async def another_round_of_deltas() -> int:
        """Every video recalculated again: 500 more deltas (a trust refresh does the same)."""
        await scores.enqueue(conn, videos)
        return await settled_position(database_url)

    async def stalled_client(hello: dict) -> StalledClient:
        client = await anyio.to_thread.run_sync(StalledClient, server.port, hello)
        cleanup.callback(client.close)
        return client

    with contextlib.ExitStack() as cleanup:
        async with ws_subscriber(server.url) as healthy:
            try:
                await healthy.until_frame("welcome")
                rss_before = rss_bytes(server.process.pid)

                # A live client stops reading: its buffers fill, its backlog passes the bound.
                stalled = await stalled_client(HELLO)
                await eventually(lambda: sessions(server, 2), what="both sessions registered")
                for _ in range(60):  # about 30,000 deltas, some 6 MB per client
                    last = await another_round_of_deltas()
                    await healthy.until_seq(last, within=3)  # the healthy client keeps up
                await eventually(
                    lambda: metric(server.url, "realtube_live_resyncs_total", reason="slow"),
                    what="a slow resync",
                )
                await eventually(lambda: sessions(server, 1), what="the stalled session gone")
                assert stalled.received_bytes_pending() > 0

                # A client resuming from far behind stops reading during its replay.
                await stalled_client({**HELLO, "epoch": healthy.dataset.epoch, "seq": 0})
                await eventually(lambda: sessions(server, 2), what="the replay registered")
                await eventually(lambda: sessions(server, 1), what="the stalled replay gone")
                last = await another_round_of_deltas()
                await healthy.until_seq(last, within=3)
                rss_after = rss_bytes(server.process.pid)
            finally:
                await conn.close()

    assert healthy.cursor == last
    assert not healthy.of_type("resync")
    assert await metric(server.url, "realtube_live_resyncs_total", reason="slow") == 1
    # what a session may hold is bounded; 30,000 queued deltas would take tens of MB
    assert rss_after - rss_before < 20 * 1024 * 1024, (rss_before, rss_after)
    await eventually(lambda: sessions(server, 0), what="no session left")
    assert not server_errors(server.log())


async def sessions(server: Server, n: int) -> bool:
    return await live_connections(server.url) == n


# --------------------------------------------------------------------------- a ping flood


@pytest.mark.parametrize("direct_writes", WRITE_PATHS, ids=["direct", "asgi"])
async def test_a_ping_flood_from_a_client_that_never_reads_is_closed_with_bounded_memory(
    servers, direct_writes
):
    server = servers.start(LIVE_DIRECT_WRITES=direct_writes, LIVE_SEND_TIMEOUT_SECONDS="2")
    rss_before = rss_bytes(server.process.pid)

    flooders = [await anyio.to_thread.run_sync(StalledClient, server.port, HELLO) for _ in range(3)]
    try:
        async with anyio.create_task_group() as tg:
            dropped: list[bool] = []

            async def flood(client: StalledClient) -> None:
                # each ping is 3.9 KB: unbounded answers made this hundreds of MB in seconds
                dropped.append(
                    await anyio.to_thread.run_sync(lambda: client.flood_pings(3900, for_at_most=30))
                )

            for client in flooders:
                tg.start_soon(flood, client)
        rss_after = rss_bytes(server.process.pid)
    finally:
        for client in flooders:
            client.close()

    assert dropped == [True, True, True]
    assert rss_after - rss_before < 5 * 1024 * 1024, (rss_before, rss_after)
    await eventually(lambda: sessions(server, 0), what="the flooders' sessions gone")
    await assert_unharmed(server)
