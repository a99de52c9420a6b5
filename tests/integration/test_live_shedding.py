"""Overload is shed, not suffered: past ``LIVE_ACCEPT_RATE``/``LIVE_ACCEPT_BURST`` or
``LIVE_MAX_CONNECTIONS`` a process answers new live handshakes with 503 ``OVERLOADED`` and a
``Retry-After`` of each client's own (docs/protocol.md sections 4, 5 and 7), the Python client
waits that long and gets in on the same transport, and the connections already open keep
every delta meanwhile."""

from __future__ import annotations

import base64
import os
import re
from collections import Counter

import anyio
import httpx
import pytest

from realtube_push.client import LiveClient, LiveOptions, Retry
from tests.support import ids
from tests.support.api import vote
from tests.support.live import (
    SSE_PATH,
    WS_PATH,
    metric,
    server_dataset,
    settled_position,
    slots_held,
    sse_subscriber,
    ws_subscriber,
)
from tests.support.polling import eventually
from tests.support.servers import Server

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_server_crashes")]

# a bucket that barely refills: what a test sends at once is all it gets
SLOW_RATE = {"LIVE_ACCEPT_RATE": "0.01", "LIVE_SHED_MAX_RETRY_SECONDS": "30"}


async def no_slots_held(server: Server) -> bool:
    return await slots_held(server) == 0


async def knock(server: Server, transport: str) -> httpx.Response | None:
    """One handshake: None if it was let in (closed again at once), else the refusal."""
    if transport == "ws":
        return await ws_handshake(server)
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("GET", SSE_PATH) as response,
    ):
        if response.status_code == 200:
            return None
        await response.aread()
        return response


async def ws_handshake(server: Server) -> httpx.Response | None:
    """A WebSocket upgrade request on a raw socket (a WebSocket client library keeps the
    refusal's body from us): None on 101, else the refusal as a response."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Key: {key}\r\n\r\n"
    )
    async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
        await stream.send(request.encode())
        received = b""
        with anyio.fail_after(10):
            while b"\r\n\r\n" not in received:
                received += await stream.receive()
            head, _, body = received.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            if status == 101:
                return None
            headers = dict(line.split(": ", 1) for line in lines[1:])
            while len(body) < int(headers.get("content-length", "0")):
                body += await stream.receive()
    return httpx.Response(status, headers=headers, content=body)


async def herd(server: Server, transport: str, size: int) -> list[httpx.Response | None]:
    """``size`` handshakes at once."""
    answers: list[httpx.Response | None] = []

    async def one() -> None:
        answers.append(await knock(server, transport))

    async with anyio.create_task_group() as tg:
        for _ in range(size):
            tg.start_soon(one)
    return answers


def assert_overloaded(response: httpx.Response, max_wait: int) -> int:
    """A shed answer as documented; returns its ``Retry-After``."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "OVERLOADED"
    wait = int(response.headers["Retry-After"])
    assert 1 <= wait <= max_wait
    assert error["retryAfter"] == wait
    return wait


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_past_the_accept_rate_handshakes_get_503_overloaded_with_retry_after(
    servers, transport
):
    server = servers.start(**SLOW_RATE, LIVE_ACCEPT_BURST="3")
    answers = await herd(server, transport, 12)
    shed = [a for a in answers if a is not None]
    assert len(answers) - len(shed) == 3  # the burst, then (almost) nothing
    for response in shed:
        assert_overloaded(response, 30)
    shed_metric = await metric(server.url, "realtube_live_handshakes_shed_total", reason="rate")
    assert shed_metric == len(shed)


async def test_a_shed_herd_is_told_to_come_back_at_different_times(servers):
    server = servers.start(**SLOW_RATE, LIVE_ACCEPT_BURST="1")
    answers = await herd(server, "ws", 20) + await herd(server, "sse", 20)
    waits = [assert_overloaded(a, 30) for a in answers if a is not None]
    assert len(waits) == 39
    # spread over a window that grows with the herd, not one instant for everyone
    assert len(set(waits)) >= 5, Counter(waits)
    assert max(waits) > 10, Counter(waits)


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_past_the_connection_ceiling_handshakes_get_503_overloaded(servers, transport):
    server = servers.start(LIVE_MAX_CONNECTIONS="2", LIVE_SHED_MAX_RETRY_SECONDS="5")
    async with ws_subscriber(server.url) as a, sse_subscriber(server.url) as b:
        await a.until_frame("welcome")
        await b.until_frame("welcome")
        refused = await knock(server, transport)
        assert refused is not None
        assert_overloaded(refused, 5)
    # both gone (their slots given back a moment after): room again
    await eventually(lambda: no_slots_held(server), what="the slots given back")
    assert await knock(server, transport) is None
    shed_metric = await metric(server.url, "realtube_live_handshakes_shed_total", reason="ceiling")
    assert shed_metric == 1


async def test_the_python_client_waits_as_told_and_gets_in_on_the_same_transport(servers):
    server = servers.start(LIVE_MAX_CONNECTIONS="1", LIVE_SHED_MAX_RETRY_SECONDS="2")
    retries: list[Retry] = []
    shed_twice = anyio.Event()

    def on_retry(retry: Retry) -> None:
        retries.append(retry)
        if len(retries) >= 2:
            shed_twice.set()

    client = LiveClient(
        server.url,
        LiveOptions(retry_after_jitter=0.2, backoff_base=0.05, connect_timeout=5),
        on_retry=on_retry,
    )
    async with anyio.create_task_group() as tg:
        async with ws_subscriber(server.url) as occupant:  # holds the one connection
            await occupant.until_frame("welcome")
            tg.start_soon(client.run)
            with anyio.fail_after(30):  # each shed attempt waits 1-2 s (+ jitter)
                await shed_twice.wait()
        with anyio.fail_after(30):  # the occupant left: the next attempt gets in
            status = await client.wait_for_status(lambda s: s.connected)
        tg.cancel_scope.cancel()
    assert status.transport == "ws"
    for retry in retries:
        assert retry.next == "ws"  # shedding is no reason to fall back to SSE
        told = re.fullmatch(r"HTTP 503 \(Retry-After (\d+)s\)", retry.reason)
        assert told is not None, retry.reason
        assert int(told.group(1)) <= retry.delay <= int(told.group(1)) + 0.2


async def test_connected_clients_receive_every_delta_while_a_herd_is_shed(servers, database_url):
    server = servers.start(**SLOW_RATE, LIVE_ACCEPT_BURST="2")
    videos = [ids.video_id() for _ in range(20)]
    refusals: list[int] = []

    async def knock_forever(transport: str) -> None:
        while True:
            answer = await knock(server, transport)
            assert answer is not None, "the herd was let in"
            refusals.append(answer.status_code)

    async with (
        httpx.AsyncClient(base_url=server.url) as api,
        ws_subscriber(server.url) as ws,
        sse_subscriber(server.url) as sse,
    ):
        await ws.until_frame("welcome")
        await sse.until_frame("welcome")
        async with anyio.create_task_group() as tg:
            for transport in ("ws", "sse") * 4:
                tg.start_soon(knock_forever, transport)
            for video in videos:
                await vote(api, video)
            last = await settled_position(database_url)
            await ws.until_seq(last, within=10)
            await sse.until_seq(last, within=10)
            tg.cancel_scope.cancel()
    assert len(refusals) > len(videos)
    assert set(refusals) == {503}
    expected = (await server_dataset(database_url)).state()
    assert ws.dataset.state() == sse.dataset.state() == expected
    assert set(videos) <= set(ws.dataset.videos)


async def test_while_connected_clients_wait_past_the_lag_limit_handshakes_are_shed(servers):
    """``LIVE_SHED_LAG_MS``: the fan-out here pauses 4 s after each pass (a stand-in for a
    process too busy to deliver), so a delta published meanwhile waits; past the limit new
    handshakes are refused, and let in again once the clients have it."""
    server = servers.start(
        LIVE_FANOUT_PAUSE_FACTOR="1000000",
        LIVE_FANOUT_MAX_PAUSE_MS="4000",
        LIVE_SHED_LAG_MS="300",
        LIVE_SHED_MAX_RETRY_SECONDS="5",
    )
    first, second = ids.video_id(), ids.video_id()

    def has(sub, video: str) -> bool:
        return any(d["videoId"] == video for d in sub.video_deltas)

    async with httpx.AsyncClient(base_url=server.url) as api, ws_subscriber(server.url) as sub:
        await sub.until_frame("welcome")
        await vote(api, first)
        await sub.wait_for(lambda: has(sub, first), what="the first delta")
        # the hub now pauses: the second delta waits, and the clients with it
        await vote(api, second)

        async def refused_for_lag() -> httpx.Response | None:
            answer = await knock(server, "ws")
            return answer if answer is not None and answer.status_code == 503 else None

        refusal = await eventually(refused_for_lag, timeout=10, what="a handshake shed for lag")
        assert_overloaded(refusal, 5)

        await sub.wait_for(lambda: has(sub, second), what="the second delta")
        assert await knock(server, "ws") is None
    assert await metric(server.url, "realtube_live_handshakes_shed_total", reason="lag") >= 1
