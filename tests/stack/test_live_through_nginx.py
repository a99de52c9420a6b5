"""The live channel through the shipped nginx config in front of two app instances.

Every client here talks to nginx only (HTTPS, the stack's own certificate): votes, WebSocket
and SSE. The tests read an instance directly only to learn which one a client is on, and
PostgreSQL for the truth (the sync log and the synced dataset). A client that loses its
instance, by a crash (SIGKILL) or a graceful shutdown (SIGTERM: ``reconnect``, WS close
1012 / SSE ``event: reconnect``), reconnects through nginx with its cursor, lands on the
other instance, and ends with every seq applied exactly once and the server's dataset.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import httpx
import pytest
from httpx_ws import WebSocketUpgradeError

from tests.support import ids
from tests.support.live import (
    FRAME_TIMEOUT,
    Dataset,
    Refused,
    Subscriber,
    server_dataset,
    settled_position,
    sse_subscriber,
    subscriber,
    sync_log,
    ws_subscriber,
)
from tests.support.nginx import Nginx
from tests.support.servers import Server

if TYPE_CHECKING:
    from tests.stack.conftest import NginxStack

pytestmark = [pytest.mark.stack, pytest.mark.anyio, pytest.mark.usefixtures("no_server_crashes")]

# Small timers so a test instance notices quickly what a production one notices in seconds.
LIVE_ENV = {
    "LIVE_EMPTY_FLUSH_SECONDS": "0.1",
    "LIVE_TAIL_CHECK_SECONDS": "0.2",
    "LIVE_RECONNECT_DELAY_MS": "50",
}
# How long a reconnecting client may stay on one connection: longer than any test.
CONNECTION_LIMIT = 60.0
# Deltas of votes accepted after the instance went away that the client must see live.
VOTES_AFTER = 5


@pytest.fixture
def live_stack(nginx_stack_factory, monkeypatch) -> NginxStack:
    """Two instances with short live timers behind nginx, whose certificate the live
    subscribers trust (they verify TLS with httpx's defaults, which read SSL_CERT_FILE)."""
    stack = nginx_stack_factory(**LIVE_ENV)
    monkeypatch.setenv("SSL_CERT_FILE", str(stack.nginx.certificate))
    return stack


# --------------------------------------------------------------------------- votes via nginx


@dataclass
class Voter:
    """Votes on fresh videos through nginx, each from a loopback address of its own.

    nginx's votes zone lets one address cast 10 votes a minute (burst 5): a steady flow from
    one address would mostly get 429, so each vote comes from the next 127.1.x.y.
    """

    nginx: Nginx
    sent: int = 0

    def _address(self) -> str:
        self.sent += 1
        return f"127.1.{self.sent // 250}.{self.sent % 250 + 1}"

    async def cast(self, video: str) -> httpx.Response:
        body = {"videoId": video, "category": "fully_ai", "userId": ids.user_id()}
        async with self.nginx.client(local_address=self._address()) as client:
            return await client.post("/api/votes", json=body)


@dataclass
class VoteFlow:
    """Votes through nginx one after another until stopped; an instance going away may cost
    a vote its answer (a 502 for a POST nginx had already sent), never the test."""

    voter: Voter
    accepted: list[str] = field(default_factory=list)  # videos whose vote got 200
    failed: list[str] = field(default_factory=list)
    stopping: anyio.Event = field(default_factory=anyio.Event)
    stopped: anyio.Event = field(default_factory=anyio.Event)

    async def run(self) -> None:
        try:
            while not self.stopping.is_set():
                video = ids.video_id()
                try:
                    r = await self.voter.cast(video)
                except httpx.TransportError as exc:
                    self.failed.append(repr(exc))
                    continue
                if r.status_code == 200:
                    self.accepted.append(video)
                else:
                    self.failed.append(f"{r.status_code} {r.text[:200]}")
        finally:
            self.stopped.set()

    async def stop(self) -> None:
        """Stop, and return once the last vote is answered."""
        self.stopping.set()
        await self.stopped.wait()


# --------------------------------------------------------------------------- reconnecting client


@dataclass
class LiveClient:
    """One live client through nginx doing what docs/protocol.md section 7 asks: on
    ``reconnect`` it waits ``retryAfterMs``; on any end it reconnects with its cursor (WS
    ``hello``, SSE ``?seq=`` or ``Last-Event-ID``), backing off while nginx refuses it.

    Its ``Dataset`` outlives the connections and refuses any frame that does not continue
    the cursor, so a gap or an overlap across a reconnection fails the test on the spot.
    """

    transport: str
    url: str
    last_event_id: bool = False
    dataset: Dataset = field(default_factory=Dataset)
    connections: list[Subscriber] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def current(self) -> Subscriber | None:
        return self.connections[-1] if self.connections else None

    def summary(self) -> str:
        return f"cursor={self.dataset.seq} refusals={self.refusals} " + " | ".join(
            c.summary() for c in self.connections
        )

    async def run(self) -> None:
        failures = 0
        while True:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    sub = await stack.enter_async_context(
                        subscriber(
                            self.transport, self.url, self.dataset, last_event_id=self.last_event_id
                        )
                    )
                except (Refused, WebSocketUpgradeError, httpx.TransportError) as exc:
                    self.refusals.append(repr(exc))
                    failures += 1
                    await anyio.sleep(min(0.05 * 2**failures, 1.0))  # the client's backoff
                    continue
                failures = 0
                self.connections.append(sub)
                self._notify()
                await sub.until_ended(within=CONNECTION_LIMIT)
            self._notify()
            notices = sub.of_type("reconnect")
            if notices:  # the delay the server asked for, as a client must honour it
                await anyio.sleep(notices[-1]["retryAfterMs"] / 1000)

    async def wait_for(
        self, predicate: Callable[[], object], *, within: float = FRAME_TIMEOUT, what: str = ""
    ) -> None:
        """Wait (bounded) until ``predicate()`` holds, across reconnections."""
        try:
            with anyio.fail_after(within):
                while not predicate():
                    sub = self.current
                    if sub is None or sub.ended:
                        await self._changed.wait()  # the next connection
                    else:
                        await sub.wait_for(
                            lambda s=sub: predicate() or s.ended, within=CONNECTION_LIMIT
                        )
        except TimeoutError:
            raise AssertionError(
                f"{what or 'condition'} not met within {within}s: {self.summary()}"
            ) from None

    async def until_seq(self, seq: int, *, within: float = FRAME_TIMEOUT) -> None:
        await self.wait_for(
            lambda: self.dataset.seq is not None and self.dataset.seq >= seq,
            within=within,
            what=f"cursor {seq}",
        )

    async def until_welcomed(self, count: int) -> Subscriber:
        """Wait until the ``count``-th connection has its welcome; returns that connection."""
        await self.wait_for(
            lambda: len(self.connections) >= count and self.connections[count - 1].welcome,
            what=f"welcome of connection {count}",
        )
        return self.connections[count - 1]

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


# --------------------------------------------------------------------------- helpers


async def instances(stack: NginxStack) -> dict[str, Server]:
    """The stack's instances by instance id (what ``welcome`` names), read from each one."""
    found = {}
    for app in stack.apps:
        async with httpx.AsyncClient(base_url=app.url) as client:
            found[(await client.get("/health/ready")).json()["instance"]] = app
    assert len(found) == len(stack.apps)
    return found


def received(*subs: Subscriber) -> list[tuple[int, str]]:
    """``(seq, videoId)`` of every video delta the connections received, in arrival order."""
    return [(d["seq"], d["videoId"]) for sub in subs for d in sub.video_deltas]


async def assert_nothing_missing(
    client: LiveClient, start: int, final: int, database_url: str
) -> None:
    """Every seq in ``start+1..final`` applied exactly once, each delta the log's own, and
    the client's dataset the one PostgreSQL holds at ``final``."""
    frames = [f for c in client.connections for f in c.of_type("deltas")]
    covered = [seq for f in frames for seq in range(f["from"], f["to"] + 1)]
    assert covered == list(range(start + 1, final + 1)), client.summary()
    log = await sync_log(database_url, after=start)
    assert log[-1].seq == final
    assert received(*client.connections) == [(row.seq, row.entity_id) for row in log]
    payloads = {row.seq: {**row.payload, "seq": row.seq} for row in log}
    assert all(d == payloads[d["seq"]] for c in client.connections for d in c.video_deltas)
    server = await server_dataset(database_url)
    assert (server.epoch, server.seq) == (client.dataset.epoch, client.dataset.seq)
    assert client.dataset.state() == server.state()


@dataclass
class Outage:
    """What happened around taking the client's instance away."""

    victim: Server
    survivor_id: str
    start: int  # the client's cursor when it was first welcomed
    cursor_at_outage: int  # its cursor when the instance was stopped (mid-stream: > start)
    final: int  # the log's last seq once the votes stopped
    stop_result: Any  # what the stop returned (the exit code of a graceful one)


async def take_away_the_clients_instance(
    stack: NginxStack,
    database_url: str,
    client: LiveClient,
    stop: Callable[[Server], Any],
) -> Outage:
    """Connect ``client``, let votes flow through nginx, ``stop`` the instance the client is
    on mid-stream (in a thread: a graceful stop waits for the process), keep voting until
    the client has the deltas of ``VOTES_AFTER`` votes accepted after that, then stop the
    votes and wait until the client is at the log's final seq."""
    by_id = await instances(stack)
    flow = VoteFlow(Voter(stack.nginx))
    results: list[Any] = []
    stopped = anyio.Event()

    async def stop_victim(victim: Server) -> None:
        results.append(await anyio.to_thread.run_sync(stop, victim))
        stopped.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(client.run)
        first = await client.until_welcomed(1)
        assert first.welcome is not None
        victim = by_id[first.welcome["instance"]]
        (survivor_id,) = set(by_id) - {first.welcome["instance"]}
        start = client.dataset.seq
        assert start is not None
        tg.start_soon(flow.run)
        # mid-stream: the client is applying the deltas of the flowing votes
        await client.until_seq(start + 3)
        cursor_at_outage = client.dataset.seq
        accepted_before = len(flow.accepted)
        tg.start_soon(stop_victim, victim)

        def saw_votes_after() -> bool:
            later = flow.accepted[accepted_before:]
            return len(later) >= VOTES_AFTER and all(v in client.dataset.videos for v in later)

        await client.wait_for(
            saw_votes_after, within=15, what=f"deltas of {VOTES_AFTER} votes after the outage"
        )
        await flow.stop()
        final = await settled_position(database_url)
        await client.until_seq(final)
        with anyio.fail_after(45):  # a graceful stop: the process must have exited
            await stopped.wait()
        tg.cancel_scope.cancel()
    assert cursor_at_outage is not None
    return Outage(victim, survivor_id, start, cursor_at_outage, final, results[0])


def assert_resumed_on(client: LiveClient, survivor_id: str) -> Subscriber:
    """One reconnection, to the other instance, resuming from the cursor."""
    assert len(client.connections) == 2, client.summary()
    second = client.connections[1]
    assert second.welcome is not None
    assert second.welcome["instance"] == survivor_id
    assert second.welcome["resume"] in ("replay", "live"), second.welcome
    assert second.of_type("resync") == []
    return second


# --------------------------------------------------------------------------- the tests


async def test_ws_and_sse_clients_get_the_delta_of_a_vote_all_through_nginx(
    live_stack, database_url
):
    url = live_stack.nginx.https_url
    video = ids.video_id()
    async with ws_subscriber(url) as ws, sse_subscriber(url) as sse:
        for sub in (ws, sse):
            await sub.until_frame("welcome")
        assert ws.cursor == sse.cursor == 0
        r = await Voter(live_stack.nginx).cast(video)
        assert r.status_code == 200, r.text
        for sub in (ws, sse):
            await sub.wait_for(
                lambda s=sub: video in s.dataset.videos, what=f"the delta of {video}"
            )

    log = await sync_log(database_url)
    assert [(row.seq, row.entity_id) for row in log] == [(1, video)]
    expected = {**log[0].payload, "seq": 1}
    for sub in (ws, sse):
        assert received(sub) == [(1, video)]
        assert sub.video_deltas == [expected]
        assert sub.cursor == 1
    assert sse.last_event_id == "1"
    live_ids = set(await instances(live_stack))
    assert {ws.welcome["instance"], sse.welcome["instance"]} <= live_ids


@pytest.mark.parametrize(
    ("transport", "last_event_id"), [("ws", False), ("sse", True)], ids=["ws", "sse"]
)
async def test_a_client_whose_instance_is_killed_resumes_on_the_other_without_loss(
    live_stack, database_url, transport, last_event_id
):
    client = LiveClient(transport, live_stack.nginx.https_url, last_event_id=last_event_id)
    outage = await take_away_the_clients_instance(live_stack, database_url, client, Server.kill)

    assert outage.victim.process.returncode == -9
    first = client.connections[0]
    # a crash: the stream just ended, nobody said goodbye (nginx drops the client's TCP)
    assert first.of_type("reconnect") == []
    assert first.close_code in (None, 1006)
    assert outage.cursor_at_outage > outage.start
    assert_resumed_on(client, outage.survivor_id)
    await assert_nothing_missing(client, outage.start, outage.final, database_url)


@pytest.mark.parametrize(
    ("transport", "last_event_id"), [("ws", False), ("sse", False)], ids=["ws", "sse"]
)
async def test_a_graceful_shutdown_says_reconnect_through_nginx_and_the_client_resumes(
    live_stack, database_url, transport, last_event_id
):
    client = LiveClient(transport, live_stack.nginx.https_url, last_event_id=last_event_id)
    outage = await take_away_the_clients_instance(
        live_stack, database_url, client, Server.terminate
    )

    assert outage.stop_result == 0, outage.victim.log()
    assert outage.cursor_at_outage > outage.start
    first = client.connections[0]
    notice = first.frames[-1]
    assert notice["t"] == "reconnect", first.summary()
    assert notice["reason"] == "shutdown"
    assert 0 <= notice["retryAfterMs"] <= 50  # one client: the shortest window, 50 ms
    if transport == "ws":
        assert first.close_code == 1012
    else:
        assert first.retry_ms[-1] == notice["retryAfterMs"]
    assert_resumed_on(client, outage.survivor_id)
    await assert_nothing_missing(client, outage.start, outage.final, database_url)
