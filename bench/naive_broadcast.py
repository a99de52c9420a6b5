"""The baseline for bench/live_load.py: a naive Quart/Hypercorn broadcast.

What a first version of the live channel would look like: every WebSocket handler owns a
queue and awaits ``websocket.send`` for each message; each vote is one message, encoded
once, put in every queue. No batching, no pacing, no direct writes. It speaks just enough
of our protocol (hello -> welcome, ``deltas`` frames with a seq range, ``POST
/api/votes``) for the same load generator to measure it the same way.

    python -m bench.live_load --naive --connections 5000
"""

from __future__ import annotations

import asyncio
import os
import uuid

import msgpack
import uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, request, websocket

QUEUE_BOUND = 1000  # per client; past it the naive server just drops (and is measured so)

app = Quart("naive_broadcast")
clients: set[asyncio.Queue[bytes]] = set()
state = {"seq": 0, "epoch": uuid.uuid4().hex}


@app.get("/health/live")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/api/votes")
async def vote() -> dict[str, str]:
    """One vote -> one frame, sent to every client."""
    body = await request.get_json()
    state["seq"] += 1
    seq = state["seq"]
    frame = msgpack.packb(
        {
            "t": "deltas",
            "epoch": state["epoch"],
            "from": seq,
            "to": seq,
            "videos": [{"videoId": body["videoId"], "score": 100.0, "seq": seq}],
            "channels": [],
        }
    )
    for queue in clients:
        if queue.qsize() < QUEUE_BOUND:
            queue.put_nowait(frame)
    return {"status": "ok"}


@app.websocket("/api/live/ws")
async def live() -> None:
    await websocket.accept()
    await websocket.receive()  # the hello
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    welcome = {"t": "welcome", "epoch": state["epoch"], "seq": state["seq"], "resume": "fresh"}
    await websocket.send(msgpack.packb(welcome))
    clients.add(queue)
    try:
        while True:
            await websocket.send(await queue.get())
    finally:
        clients.discard(queue)


def main() -> None:
    config = Config()
    config.bind = [f"127.0.0.1:{os.environ['PORT']}"]
    config.accesslog = None
    config.errorlog = "-"
    config.backlog = 4096
    uvloop.run(serve(app, config))  # type: ignore[arg-type]  # same loop as our server


if __name__ == "__main__":
    main()
