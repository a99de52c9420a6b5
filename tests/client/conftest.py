"""Fixtures for the Python live client's tests: both AnyIO backends, real servers.

Every async test here runs twice, on asyncio and on trio: the client promises to be
backend-neutral. The servers are real ``realtube-push serve`` processes (the suite's
``servers`` fixture), one per test, with fast live-channel timers.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any

import anyio
import httpx
import pytest

from realtube_push.client import LiveClient, LiveOptions
from tests.client.peer import Peer, serve_peer
from tests.support import ids
from tests.support.polling import eventually
from tests.support.servers import Server, ServerFactory

#: Server settings that make the live channel quick to observe (same semantics, shorter timers).
FAST_SERVER = {
    "FULL_BLOB_INTERVAL_SECONDS": "0.2",
    "LIVE_EMPTY_FLUSH_SECONDS": "0.1",
    "CHANNEL_DEBOUNCE_SECONDS": "0.1",
    "SCORE_DEBOUNCE_MS": "10",
    "LIVE_RECONNECT_DELAY_MS": "300",
}


@pytest.fixture(params=["asyncio", "trio"], scope="module")
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def start_server(servers: ServerFactory) -> Callable[..., Server]:
    """Starts another server (same database and Redis) with the fast live-channel timers;
    keyword arguments override settings (environment variable names)."""
    return lambda **env: servers.start(**{**FAST_SERVER, **env})


@pytest.fixture
def server(start_server: Callable[..., Server]) -> Server:
    """One real server with the fast live-channel timers."""
    return start_server()


class Api:
    """What a test does to a server over HTTP: vote, unvote, read the sync endpoints."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def vote(self, url: str, video_id: str, **extra: Any) -> None:
        r = await self.http.post(f"{url}/api/votes", json=_vote_body(video_id, **extra))
        assert r.status_code == 200, r.text

    async def unvote(self, url: str, video_id: str, user_id: str) -> None:
        r = await self.http.request(
            "DELETE", f"{url}/api/votes", json={"videoId": video_id, "userId": user_id}
        )
        assert r.status_code == 200, r.text

    async def full(self, url: str) -> dict[str, Any]:
        r = await self.http.get(f"{url}/api/sync/full")
        assert r.status_code == 200, r.text
        return r.json()

    async def last_seq(self, url: str) -> tuple[str, int]:
        """The server's sync-log position (epoch, last seq)."""
        r = await self.http.get(f"{url}/api/sync/delta", params={"cursor": 0})
        assert r.status_code == 200, r.text
        body = r.json()
        while body.get("hasMore"):
            r = await self.http.get(f"{url}/api/sync/delta", params={"cursor": body["cursor"]})
            body = r.json()
        return body["epoch"], body["cursor"]

    async def settled(self, url: str, client: LiveClient, *, within: float = 15) -> dict:
        """The server's full document at exactly the client's cursor, once both got there.

        The full document is rebuilt by a background worker (every 0.2 s here), so this is
        the one place that polls: there is no event to await in another process.
        """

        async def at_same_cursor() -> dict | None:
            doc = await self.full(url)
            cursor = client.cache.cursor
            if cursor is None or doc["epoch"] != cursor.epoch:
                return None
            if doc["cursor"] > cursor.seq:
                with anyio.fail_after(within):
                    await client.wait_for_cursor(doc["cursor"])
                return None
            return doc if doc["cursor"] == cursor.seq else None

        return await eventually(
            at_same_cursor, timeout=within, interval=0.05, what="server and client settled"
        )

    @staticmethod
    def comparable(doc: dict[str, Any]) -> dict[str, Any]:
        """A full document's (or cache snapshot's) data keyed by id, without wire-only fields."""
        strip = ("seq", "action")
        return {
            "videos": {
                v["videoId"]: {k: x for k, x in v.items() if k not in strip} for v in doc["videos"]
            },
            "channels": {
                c["channelId"]: {k: x for k, x in c.items() if k not in strip}
                for c in doc["channels"]
            },
            "cursor": doc["cursor"],
            "epoch": doc["epoch"],
        }


def _vote_body(video_id: str, *, user_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "videoId": video_id,
        "category": "fully_ai",
        "userId": user_id or ids.user_id(),
        **extra,
    }


@pytest.fixture
async def api() -> Any:
    async with httpx.AsyncClient(timeout=10) as http:
        yield Api(http)


#: ``LiveOptions`` with test-sized backoff and timeouts (the behaviour is the same).
TEST_OPTIONS = {"backoff_base": 0.05, "backoff_cap": 0.5, "connect_timeout": 5.0}

#: ``LiveClient`` keyword arguments that are not options.
_CLIENT_ARGS = ("cache", "http_client", "on_change", "on_applied", "on_status", "on_retry")


@pytest.fixture
def make_client() -> Callable[..., LiveClient]:
    """``make_client(url, **kwargs)``: a ``LiveClient`` from ``LiveOptions`` fields (test-sized
    timers unless given) and the client's own arguments (``cache``, ``on_change``...) in one
    keyword list."""

    def make(url: str | list[str], **kwargs: Any) -> LiveClient:
        client_args = {k: kwargs.pop(k) for k in _CLIENT_ARGS if k in kwargs}
        return LiveClient(url, LiveOptions(**{**TEST_OPTIONS, **kwargs}), **client_args)

    return make


@pytest.fixture
def serve(anyio_backend: str) -> Callable[[Peer], AbstractAsyncContextManager[str]]:
    """``serve_peer`` on the test's backend: ``async with serve(peer) as url``."""
    return partial(serve_peer, backend=anyio_backend)
