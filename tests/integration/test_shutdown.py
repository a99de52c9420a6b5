"""SIGTERM under keep-alive load, as clients and a load balancer see it: every request is
answered, or refused once the listener is gone; none is cut off, none is committed without
its reply reaching the client."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

import anyio
import httpx
import pytest

from tests.support import ids, pg
from tests.support.live import server_errors
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio

CLIENTS = 8
WARM_UP_REQUESTS = 15  # per client, on its one keep-alive connection, before the SIGTERM


@dataclass
class Outcome:
    """What the looping clients saw."""

    answered_votes: list[str] = field(default_factory=list)
    attempted_votes: list[str] = field(default_factory=list)
    closing_responses: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    ready_statuses: list[tuple[int, str]] = field(default_factory=list)


async def _vote_until_refused(base_url: str, outcome: Outcome) -> None:
    """Vote in a loop on one keep-alive connection (a new one after ``Connection: close``)
    until a connection attempt is refused."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=15) as client:
        while True:
            video = ids.video_id()
            outcome.attempted_votes.append(video)
            body = {"videoId": video, "category": "fully_ai", "userId": ids.user_id()}
            try:
                r = await client.post("/api/votes", json=body)
            except httpx.ConnectError:
                outcome.refused += 1
                return
            except httpx.HTTPError as exc:
                outcome.errors.append(f"{type(exc).__name__}: {exc}")
                return
            if r.status_code != 200:
                outcome.errors.append(f"{r.status_code}: {r.text}")
                return
            outcome.answered_votes.append(video)
            if r.headers.get("connection", "").lower() == "close":
                outcome.closing_responses += 1


async def _poll_readiness_until_refused(base_url: str, outcome: Outcome) -> None:
    """A load balancer's readiness probe, on a keep-alive connection of its own."""
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
        while True:
            try:
                r = await client.get("/health/ready")
            except httpx.ConnectError:
                return
            except httpx.HTTPError as exc:
                outcome.errors.append(f"readiness {type(exc).__name__}: {exc}")
                return
            outcome.ready_statuses.append((r.status_code, r.json()["status"]))
            await anyio.sleep(0.02)


async def test_keep_alive_clients_looping_through_sigterm_are_answered_or_refused_never_cut(
    servers, database_url
):
    server = servers.start()
    outcome = Outcome()

    async with anyio.create_task_group() as tg:
        for _ in range(CLIENTS):
            tg.start_soon(_vote_until_refused, server.url, outcome)
        tg.start_soon(_poll_readiness_until_refused, server.url, outcome)
        await eventually(
            lambda: len(outcome.answered_votes) >= CLIENTS * WARM_UP_REQUESTS or outcome.errors,
            timeout=60,
            what="clients warmed up",
        )
        server.process.send_signal(signal.SIGTERM)

    assert server.process.wait(timeout=60) == 0
    assert outcome.errors == []
    # nothing at error level either: a worker cancelled mid-transaction must end it before
    # its connection goes back to the pool (asyncpg logs the reset of an open one as an error)
    assert server_errors(server.log()) == []
    assert outcome.refused == CLIENTS
    assert outcome.closing_responses > 0  # in-flight responses said the connection ends
    assert (503, "draining") in outcome.ready_statuses  # the probe saw it leave first
    committed = await pg.fetchval(
        database_url,
        "SELECT count(*) FROM votes WHERE video_id = ANY($1::text[])",
        outcome.attempted_votes,
    )
    assert committed == len(outcome.answered_votes)
