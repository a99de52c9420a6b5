"""Resume without loss: whatever the transport, the disconnect point, a Redis restart or an
instance restart, a client that keeps its cursor ends with exactly the server's dataset.

The property tests drive real servers with plans drawn by Hypothesis (see
``tests/support/properties.py``): legs of being connected (WebSocket, SSE or polling, on a
random instance) while votes are cast, leaving at a random point, votes cast while away.
Votes also keep flowing in the background throughout. The client's ``Dataset`` refuses any
frame that does not continue its cursor, so a gap or a duplicate fails on the spot; at the
end its dataset must equal the one PostgreSQL holds at the same log position.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import anyio.to_thread
import httpx
import pytest
from hypothesis import strategies as st

from tests.support import ids
from tests.support.api import vote
from tests.support.live import (
    Dataset,
    RestartableRedis,
    Subscriber,
    full_sync,
    poll_to_current,
    server_dataset,
    settled_position,
    sse_subscriber,
    subscriber,
    sync_log,
    ws_subscriber,
)
from tests.support.properties import for_all
from tests.support.servers import Server, ServerFactory
from tests.support.votes import cast_on_fresh_users

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_server_crashes")]

# Small timers so a test server notices quickly what a production one notices in seconds.
LIVE_ENV = {
    "LIVE_EMPTY_FLUSH_SECONDS": "0.1",
    "LIVE_TAIL_CHECK_SECONDS": "0.2",
    "LIVE_RECONNECT_DELAY_MS": "50",
    "FULL_BLOB_INTERVAL_SECONDS": "0.5",
}

TRANSPORTS = ("ws", "sse", "poll")
VOTE_ACTIONS = st.sampled_from(("new", "again", "withdraw"))


# --------------------------------------------------------------------------- the plans


@dataclass(frozen=True)
class Leg:
    """One stretch of a client's life: connect, see votes, leave, miss votes."""

    transport: str  # "ws" | "sse" | "poll"
    instance: int  # which server it connects to
    last_event_id: bool  # SSE: resume with the Last-Event-ID header rather than ?seq=
    votes_online: tuple[str, ...]  # cast while connected
    leave: str  # "at_once" | "after_a_frame" | "caught_up": when it drops the connection
    disruption: str | None  # "redis" | "instance" | None: happens while connected
    votes_away: tuple[str, ...]  # cast while disconnected


@dataclass(frozen=True)
class Plan:
    legs: tuple[Leg, ...]
    final: str  # transport of the last catch-up


def plans(
    disruptions: tuple[str | None, ...] = (None,), max_legs: int = 4
) -> st.SearchStrategy[Plan]:
    votes = st.lists(VOTE_ACTIONS, max_size=4).map(tuple)
    leg = st.builds(
        Leg,
        transport=st.sampled_from(TRANSPORTS),
        instance=st.integers(0, 1),
        last_event_id=st.booleans(),
        votes_online=votes,
        leave=st.sampled_from(("at_once", "after_a_frame", "caught_up")),
        disruption=st.sampled_from(disruptions),
        votes_away=votes,
    )
    return st.builds(
        Plan,
        legs=st.lists(leg, min_size=1, max_size=max_legs).map(tuple),
        final=st.sampled_from(TRANSPORTS),
    )


# --------------------------------------------------------------------------- the world


@dataclass
class Voters:
    """Votes through the API: new videos, more votes on a recent one, withdrawals."""

    url: Callable[[], str]  # the instance to vote on (instances restart under our feet)
    videos: list[str] = field(default_factory=list)
    withdrawable: list[tuple[str, str]] = field(default_factory=list)

    async def cast(self, actions: tuple[str, ...]) -> None:
        async with httpx.AsyncClient(base_url=self.url()) as api:
            for action in actions:
                if action == "withdraw" and self.withdrawable:
                    video, user = self.withdrawable.pop(0)
                    r = await api.request(
                        "DELETE", "/api/votes", json={"videoId": video, "userId": user}
                    )
                    assert r.status_code == 200, r.text
                    continue
                video = self.videos[-1] if action == "again" and self.videos else ids.video_id()
                user = ids.user_id()
                await vote(api, video, user_id=user, category="ai_visuals")
                self.videos.append(video)
                self.withdrawable.append((video, user))


@dataclass
class World:
    """Two server instances on one database, the votes, and what can be disrupted."""

    servers: ServerFactory
    database_url: str
    instances: list[Server]
    env: dict[str, str]
    redis: RestartableRedis | None = None
    # held by each background vote; a Redis outage holds it (the vote API needs Redis)
    voting: anyio.Lock = field(default_factory=anyio.Lock)

    async def start_instance(self) -> Server:
        return await anyio.to_thread.run_sync(functools.partial(self.servers.start, **self.env))

    async def restart_instance(self, index: int) -> None:
        """SIGTERM (clients get a reconnect notice), exit 0, a new process on the same data."""
        old = self.instances[index]
        assert await anyio.to_thread.run_sync(old.terminate) == 0, old.log()
        self.instances[index] = await self.start_instance()

    async def restart_redis(self, keep_data: bool) -> None:
        """Redis goes away; votes committed meanwhile never reach pub/sub; Redis comes back."""
        assert self.redis is not None
        async with self.voting:
            await anyio.to_thread.run_sync(functools.partial(self.redis.stop, keep_data=keep_data))
            await cast_into_database(self.database_url, [ids.video_id() for _ in range(2)])
            await settled_position(self.database_url)  # scored and logged; publish failed
            await anyio.to_thread.run_sync(self.redis.start)

    async def disrupt(self, what: str | None, leg_instance: int, keep_data: bool) -> None:
        if what == "redis":
            await self.restart_redis(keep_data)
        elif what == "instance":
            await self.restart_instance(leg_instance)


@dataclass
class VoteFlow:
    """Background votes on fresh videos (about 30 a second), on the world's instances in turn."""

    world: World
    stopping: anyio.Event = field(default_factory=anyio.Event)
    stopped: anyio.Event = field(default_factory=anyio.Event)

    async def run(self) -> None:
        turn = 0
        try:
            while not self.stopping.is_set():
                async with self.world.voting:
                    server = self.world.instances[turn % len(self.world.instances)]
                    turn += 1
                    async with httpx.AsyncClient(base_url=server.url) as api:
                        with contextlib.suppress(httpx.TransportError):  # it is restarting
                            await vote(api, ids.video_id())
                with anyio.move_on_after(0.03):
                    await self.stopping.wait()
        finally:
            self.stopped.set()

    async def stop(self) -> None:
        """Stop, and return once the last vote is acknowledged."""
        self.stopping.set()
        await self.stopped.wait()


async def cast_into_database(database_url: str, videos: list[str]) -> None:
    """Votes cast straight into PostgreSQL (the score worker wakes on their NOTIFY)."""
    await cast_on_fresh_users(database_url, videos)


async def visit(world: World, leg: Leg, dataset: Dataset, voters: Voters, keep_data: bool) -> None:
    """One leg: connect (or poll), see votes, maybe a disruption, leave at the drawn point."""
    server = world.instances[leg.instance]
    if leg.transport == "poll":
        await voters.cast(leg.votes_online)
        await world.disrupt(leg.disruption, leg.instance, keep_data)
        async with httpx.AsyncClient(base_url=world.instances[leg.instance].url) as client:
            await poll_to_current(client, dataset)
        return
    async with subscriber(
        leg.transport, server.url, dataset, last_event_id=leg.last_event_id
    ) as sub:
        await voters.cast(leg.votes_online)
        await world.disrupt(leg.disruption, leg.instance, keep_data)
        if leg.leave == "after_a_frame":
            await sub.wait_for(lambda: sub.ended or sub.of_type("deltas"), what="a deltas frame")
        elif leg.leave == "caught_up":
            target = await settled_position(world.database_url)
            await sub.wait_for(
                lambda: sub.ended or sub.cursor >= target, what=f"cursor {target}", within=8
            )
        assert_resumed_cleanly(sub)


def assert_resumed_cleanly(sub: Subscriber) -> None:
    """A client with a valid cursor is never told to resync, and resumes by replay or live."""
    assert not sub.of_type("resync"), sub.summary()
    assert not sub.of_type("error"), sub.summary()
    if sub.welcome is not None:
        assert sub.welcome["resume"] in ("replay", "live"), sub.welcome


async def catch_up(transport: str, server: Server, dataset: Dataset, last: int) -> None:
    if transport == "poll":
        async with httpx.AsyncClient(base_url=server.url) as client:
            await poll_to_current(client, dataset)
        return
    async with subscriber(transport, server.url, dataset) as sub:
        await sub.until_seq(last, within=8)
        assert_resumed_cleanly(sub)


async def run_plan(world: World, plan: Plan, keep_data: bool = False) -> None:
    """Live through the plan's legs with votes flowing, then catch up and compare."""
    async with httpx.AsyncClient(base_url=world.instances[0].url) as api:
        dataset = await full_sync(api)  # a new client: full sync, then live from its cursor
    voters = Voters(lambda: world.instances[0].url)
    flow = VoteFlow(world)
    async with anyio.create_task_group() as tg:
        tg.start_soon(flow.run)
        for leg in plan.legs:
            await visit(world, leg, dataset, voters, keep_data)
            await voters.cast(leg.votes_away)
        await flow.stop()
    last = await settled_position(world.database_url)
    await catch_up(plan.final, world.instances[0], dataset, last)

    truth = await server_dataset(world.database_url)
    assert truth.seq == last
    assert (dataset.epoch, dataset.seq) == (truth.epoch, truth.seq)
    assert dataset.state() == truth.state()


async def make_world(servers: ServerFactory, database_url: str, **env: str) -> World:
    env = {**LIVE_ENV, **env}
    world = World(servers, database_url, [], env)
    world.instances = [servers.start(**env), servers.start(**env)]
    return world


# --------------------------------------------------------------------------- the tests


async def test_resume_after_random_disconnects_ends_with_the_servers_dataset(servers, database_url):
    world = await make_world(servers, database_url)
    await for_all(plans(), functools.partial(run_plan, world), max_examples=12)


async def test_resume_is_gap_free_across_redis_and_instance_restarts(
    servers, database_url, tmp_path
):
    redis = RestartableRedis(tmp_path)  # the servers' Redis, ours to stop and start
    redis.start()
    try:
        world = await make_world(servers, database_url, REDIS_URL=redis.url)
        world.redis = redis
        always_tried = (
            # connected through a Redis outage (messages lost, recent store emptied), then
            # reconnected by its instance's restart, resumed by SSE with Last-Event-ID
            (
                Plan(
                    (
                        Leg("ws", 0, False, ("new", "new"), "caught_up", "redis", ("new",)),
                        Leg("sse", 1, True, ("again",), "at_once", "instance", ("withdraw",)),
                    ),
                    final="ws",
                ),
                False,
            ),
            # polling across an outage that keeps Redis's data (a recent store with a hole),
            # then a WebSocket whose instance restarts under it
            (
                Plan(
                    (
                        Leg("sse", 1, False, ("new",), "after_a_frame", None, ("new",)),
                        Leg("poll", 0, False, ("new",), "at_once", "redis", ("new",)),
                        Leg("ws", 0, False, (), "caught_up", "instance", ()),
                    ),
                    final="sse",
                ),
                True,
            ),
        )
        await for_all(
            st.tuples(plans(disruptions=(None, "redis", "instance"), max_legs=3), st.booleans()),
            lambda drawn: run_plan(world, *drawn),
            max_examples=4,
            examples=always_tried,
        )
    finally:
        servers.stop_all()  # before their Redis goes away for good
        redis.stop()


async def test_on_sigterm_clients_reconnect_elsewhere_and_resume_without_loss(
    servers, database_url
):
    a, b = servers.start(**LIVE_ENV), servers.start(**LIVE_ENV)
    flow = VoteFlow(World(servers, database_url, [b], LIVE_ENV))
    async with anyio.create_task_group() as tg:
        tg.start_soon(flow.run)  # votes keep flowing across the switch
        # new clients full-sync first and go live from that cursor (docs/protocol.md §1): a
        # client without a cursor would be welcomed past votes already cast and miss them
        async with httpx.AsyncClient(base_url=a.url) as api:
            ws_data, sse_data = await full_sync(api), await full_sync(api)
        synced_to = {"ws": ws_data.seq, "sse": sse_data.seq}
        async with ws_subscriber(a.url, ws_data) as ws, sse_subscriber(a.url, sse_data) as sse:
            for sub in (ws, sse):
                await sub.until_frame("welcome")
                await sub.wait_for(lambda s=sub: len(s.video_deltas) >= 3, what="3 deltas")
            start = min(ws.welcome["seq"], sse.welcome["seq"])
            exit_code = await anyio.to_thread.run_sync(a.terminate)
            for sub in (ws, sse):
                await sub.until_ended()
        # both resume on B from their cursors
        async with (
            ws_subscriber(b.url, ws.dataset) as ws_b,
            sse_subscriber(b.url, sse.dataset, last_event_id=True) as sse_b,
        ):
            for sub in (ws_b, sse_b):
                await sub.until_frame("welcome")
                await sub.wait_for(lambda s=sub: len(s.video_deltas) >= 3, what="3 more deltas")
            await flow.stop()
            last = await settled_position(database_url)
            await ws_b.until_seq(last)
            await sse_b.until_seq(last)

    assert exit_code == 0
    ws_notice, sse_notice = ws.of_type("reconnect"), sse.of_type("reconnect")
    assert [n["reason"] for n in ws_notice + sse_notice] == ["shutdown", "shutdown"]
    assert all(0 <= n["retryAfterMs"] <= 50 for n in ws_notice + sse_notice)
    assert ws.frames[-1]["t"] == "reconnect"
    assert ws.close_code == 1012
    assert sse.frames[-1]["t"] == "reconnect"
    assert sse.retry_ms == [2000, sse_notice[0]["retryAfterMs"]]  # the browser's retry hint
    for before, after in ((ws, ws_b), (sse, sse_b)):
        assert after.welcome["resume"] in ("replay", "live")
        assert not after.of_type("resync")
        # every delta after the full sync arrived exactly once, in order, across the switch
        log = await sync_log(database_url, after=synced_to[before.transport])
        got = [(d["seq"], d["videoId"]) for d in before.video_deltas + after.video_deltas]
        assert got == [(r.seq, r.entity_id) for r in log]
    assert start < last
    truth = await server_dataset(database_url)
    assert ws_b.dataset.state() == sse_b.dataset.state() == truth.state()
