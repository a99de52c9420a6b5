"""A WebSocket handshake refused where the server cannot answer before the upgrade (no ASGI
``websocket.http.response`` extension): a shed client still learns to come back later
(``reconnect`` "overloaded" with its wait, then close 1013; docs/protocol.md, "Overload")."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson
import pytest

from realtube_push.push import ws
from realtube_push.push.admission import Refusal
from realtube_push.push.transport import Overloaded
from realtube_push.web.errors import ApiError

pytestmark = pytest.mark.anyio


async def refuse(refusal: ApiError, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await ws._reject(scope, send, refusal)
    return sent


@pytest.mark.parametrize(
    ("subprotocols", "decode"),
    [
        (["realtube.v1.msgpack"], lambda m: msgpack.unpackb(m["bytes"])),
        (["realtube.v1.json"], lambda m: orjson.loads(m["text"])),
    ],
    ids=["msgpack", "json"],
)
async def test_a_shed_client_gets_reconnect_overloaded_then_1013(subprotocols, decode):
    sent = await refuse(Overloaded(Refusal("rate", 2500)), {"subprotocols": subprotocols})
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[0]["subprotocol"] == subprotocols[0]
    assert decode(sent[1]) == {"t": "reconnect", "reason": "overloaded", "retryAfterMs": 2500}
    assert sent[2]["code"] == 1013


async def test_other_refusals_close_with_1008_before_accepting():
    sent = await refuse(ApiError(429, "RATE_LIMITED", "too many"), {"subprotocols": []})
    assert sent == [{"type": "websocket.close", "code": 1008}]


async def test_with_the_extension_a_shed_client_gets_503_with_retry_after():
    scope = {"extensions": {"websocket.http.response": {}}}
    sent = await refuse(Overloaded(Refusal("ceiling", 2400)), scope)
    start, body = sent
    assert start["status"] == 503
    assert (b"retry-after", b"2") in start["headers"]
    error = orjson.loads(body["body"])["error"]
    assert error["code"] == "OVERLOADED"
    assert error["retryAfter"] == 2
