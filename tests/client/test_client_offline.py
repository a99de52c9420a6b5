"""``LiveClient``'s transport choice and polling against a scripted HTTP server (no network).

httpx's ``MockTransport`` answers the client's requests, so these tests pin the state
machine (fallback, upgrade probes, ``hasMore``, retries) without timing on a real server.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import httpx
import orjson
import pytest

from realtube_push.client import Cursor, LiveClient
from tests.client.conftest import live_client

pytestmark = pytest.mark.anyio

EPOCH = "e1"


def _video(video_id: str, seq: int, action: str = "update") -> dict[str, Any]:
    return {"videoId": video_id, "score": 40.0, "categories": {}, "seq": seq, "action": action}


class ScriptedServer:
    """Live endpoints refuse (404: an old server or a proxy without them); sync endpoints
    serve a log of three deltas in pages of two."""

    def __init__(self, *, full_failures: int = 0) -> None:
        self.hits: Counter[str] = Counter()
        self.delta_cursors: list[int] = []
        self.full_failures = full_failures
        self.ws_attempts_reached = anyio.Event()
        self.log = [_video("a", 1), _video("b", 2), _video("a", 3, "remove")]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.hits[path] += 1
        if path == "/api/live/ws":
            if self.hits[path] >= 3:
                self.ws_attempts_reached.set()
            return httpx.Response(404, json={"error": {"code": "NOT_FOUND", "message": "x"}})
        if path == "/api/live/sse":
            return httpx.Response(404, json={"error": {"code": "NOT_FOUND", "message": "x"}})
        if path == "/api/sync/full":
            if self.hits[path] <= self.full_failures:
                return httpx.Response(503, json={"error": {"code": "INTERNAL_ERROR"}})
            doc = {"videos": [], "channels": [], "cursor": 0, "epoch": EPOCH}
            return httpx.Response(200, content=orjson.dumps(doc), headers={"ETag": '"v1"'})
        if path == "/api/sync/delta":
            cursor = int(request.url.params["cursor"])
            assert request.url.params["epoch"] == EPOCH
            self.delta_cursors.append(cursor)
            rows = [d for d in self.log if d["seq"] > cursor][:2]
            more = len([d for d in self.log if d["seq"] > cursor]) > 2
            body = {
                "videos": rows,
                "channels": [],
                "cursor": rows[-1]["seq"] if rows else cursor,
                "epoch": EPOCH,
                "hasMore": more,
            }
            return httpx.Response(200, json=body)
        return httpx.Response(404)


def client_for(server: ScriptedServer, **kwargs: Any) -> tuple[LiveClient, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("backoff_cap", 0.05)
    kwargs.setdefault("poll_interval", 60.0)
    return live_client("http://rt.test", http_client=http, **kwargs), http


async def test_refused_live_endpoints_fall_back_to_polling_which_follows_has_more():
    server = ScriptedServer()
    changes: list[tuple[str, str, Any]] = []
    client, http = client_for(server, on_change=lambda *c: changes.append(c))
    async with http, anyio.create_task_group() as tg:
        tg.start_soon(client.run)
        with anyio.fail_after(5):
            assert await client.wait_for_cursor(3) == Cursor(EPOCH, 3)
            status = await client.wait_for_status(lambda s: s.connected)
        tg.cancel_scope.cancel()
    assert status.transport == "poll"
    assert server.delta_cursors == [0, 2]  # one poll = pages until hasMore is false
    assert set(client.cache.videos) == {"b"}
    assert [(kind, vid, item is None) for kind, vid, item in changes] == [
        ("video", "a", False),
        ("video", "b", False),
        ("video", "a", True),
    ]


async def test_while_polling_the_better_transports_are_tried_again():
    server = ScriptedServer()
    client, http = client_for(server, upgrade_interval=0.05)
    async with http, anyio.create_task_group() as tg:
        tg.start_soon(client.run)
        with anyio.fail_after(5):
            await server.ws_attempts_reached.wait()
        tg.cancel_scope.cancel()
    assert server.hits["/api/live/sse"] >= 2  # each probe walks down: ws, then sse, then poll


async def test_failed_full_sync_is_retried_with_backoff():
    server = ScriptedServer(full_failures=2)
    client, http = client_for(server, transports=("poll",))
    async with http, anyio.create_task_group() as tg:
        tg.start_soon(client.run)
        with anyio.fail_after(5):
            await client.wait_for_cursor(3)
        tg.cancel_scope.cancel()
    assert server.hits["/api/sync/full"] == 3
    assert client.status.full_syncs == 1


async def test_an_exception_in_a_callback_ends_run_instead_of_being_retried():
    class Boom(Exception):
        pass

    def explode(*_: object) -> None:
        raise Boom

    client, http = client_for(ScriptedServer(), transports=("poll",), on_change=explode)
    async with http:
        with anyio.fail_after(5), pytest.raises(Boom):
            await client.run()
    assert client.status.transport is None
