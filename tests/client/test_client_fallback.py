"""``LiveClient``'s transport choice and polling against a scripted peer on a real socket.

The peer (``tests/client/peer.py``) refuses the live endpoints with 404 (an old server, or a
proxy without them) and serves a log of three deltas in pages of two, which pins the state
machine (fallback, upgrade probes, ``hasMore``, retries) without the timing of a real server.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from realtube_push.client import Cursor
from realtube_push.client.wire import DELTA_PATH, FULL_PATH, SSE_PATH, WS_PATH
from tests.client.peer import EPOCH, Act, Peer

pytestmark = pytest.mark.anyio

NOT_FOUND = Act("refuse", status=404, seconds=None)
DEADLINE = 10.0


def _video(video_id: str, seq: int, action: str = "update") -> dict[str, Any]:
    return {"videoId": video_id, "score": 40.0, "categories": {}, "seq": seq, "action": action}


def old_server(**script: Any) -> Peer:
    """Live endpoints refused with 404; a log of three deltas."""
    log = [_video("a", 1), _video("b", 2), _video("a", 3, "remove")]
    return Peer(ws_then=NOT_FOUND, sse_then=NOT_FOUND, log=log, **script)


@pytest.fixture
def client_for(make_client):
    """``make_client`` with quicker backoff, polling once a minute unless told."""

    def make(url: str, **options: Any) -> Any:
        return make_client(
            url, **{"backoff_base": 0.01, "backoff_cap": 0.05, "poll_interval": 60.0, **options}
        )

    return make


async def test_refused_live_endpoints_fall_back_to_polling_which_follows_has_more(
    serve, client_for
):
    peer = old_server()
    changes: list[tuple[str, str, Any]] = []
    async with serve(peer) as url:
        client = client_for(url, on_change=lambda *c: changes.append(c))
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.run)
            with anyio.fail_after(DEADLINE):
                assert await client.wait_for_cursor(3) == Cursor(EPOCH, 3)
                status = await client.wait_for_status(lambda s: s.connected)
            tg.cancel_scope.cancel()
    assert status.transport == "poll"
    assert peer.delta_cursors == [0, 2]  # one poll = pages until hasMore is false
    assert set(client.cache.videos) == {"b"}
    assert [(kind, vid, item is None) for kind, vid, item in changes] == [
        ("video", "a", False),
        ("video", "b", False),
        ("video", "a", True),
    ]


async def test_while_polling_the_better_transports_are_tried_again(serve, client_for):
    peer = old_server()
    async with serve(peer) as url:
        client = client_for(url, upgrade_interval=0.2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.run)
            with anyio.fail_after(DEADLINE):
                await peer.wait_for(lambda p: len(p.times(SSE_PATH)) >= 3)
            tg.cancel_scope.cancel()
    # each probe walks down (WebSocket, then SSE) and the client polls again in between
    ws, sse, polls = peer.times(WS_PATH), peer.times(SSE_PATH), peer.times(DELTA_PATH)
    assert len(ws) >= 3
    for probe, (probe_ws, probe_sse) in enumerate(zip(ws[1:3], sse[1:3], strict=True)):
        assert probe_ws < probe_sse
        assert any(ws[probe] < t < probe_ws for t in polls)


async def test_failed_full_sync_is_retried_with_backoff(serve, client_for):
    peer = old_server(full=[Act("refuse", seconds=None)] * 2)
    async with serve(peer) as url:
        client = client_for(url, transports=("poll",))
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.run)
            with anyio.fail_after(DEADLINE):
                await client.wait_for_cursor(3)
            tg.cancel_scope.cancel()
    assert len(peer.times(FULL_PATH)) == 3
    assert client.status.full_syncs == 1


async def test_an_exception_in_a_callback_ends_run_instead_of_being_retried(serve, client_for):
    class Boom(Exception):
        pass

    def explode(*_: object) -> None:
        raise Boom

    async with serve(old_server()) as url:
        client = client_for(url, transports=("poll",), on_change=explode)
        with anyio.fail_after(DEADLINE), pytest.raises(Boom):
            await client.run()
    assert client.status.transport is None
