"""A lean HTTP/1.1 client for vote floods: one keep-alive connection per user, bound to a
loopback source address of its own (127.0.0.0/8), votes sent one after another.

Thousands of users in one process: no HTTP library, a request is bytes written to an asyncio
stream and a reply is a status line, headers and a ``Content-Length`` body.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import orjson

# the JS client's vote-queue retry after a network failure (clients/js: backoffInitialMs,
# backoffMaxMs)
BACKOFF_INITIAL, BACKOFF_MAX = 0.5, 60.0


@dataclass(frozen=True, slots=True)
class QueuedVote:
    """One vote in a user's offline queue."""

    video_id: str
    category: str
    cast_at: datetime


@dataclass
class User:
    """A user flushing a queue of votes from one source address."""

    user_id: str
    address: str
    start_after: float
    votes: list[QueuedVote]


@dataclass
class Reply:
    """What one vote got back (status 0: the connection failed, ``failure`` says how)."""

    user_id: str
    vote: QueuedVote
    status: int
    seconds: float
    acked_at: float
    body: dict[str, object] = field(default_factory=dict)
    failure: str = ""


def source_address(index: int) -> str:
    """The ``index``-th loopback address, skipping 127.0.0.0/24 (the server's own)."""
    n = index + 256
    return f"127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def _request(host: str, port: int, user_id: str, vote: QueuedVote) -> bytes:
    body = orjson.dumps(
        {
            "videoId": vote.video_id,
            "category": vote.category,
            "userId": user_id,
            "timestamp": vote.cast_at.isoformat(),
        }
    )
    head = (
        f"POST /api/votes HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length) if length else b""


async def flush_queue(
    host: str,
    port: int,
    user: User,
    t0: float,
    replies: list[Reply],
    failures: Counter[str],
    *,
    retry_for: float,
) -> None:
    """Wait until ``t0 + user.start_after``, connect from the user's address, send the
    queue oldest first. A connection that fails is retried as the JS client retries its
    vote queue (full jitter, from 0.5 s doubling), for up to ``retry_for`` seconds after
    the start; each failed attempt is counted in ``failures`` by kind. Every vote ends with
    one ``Reply`` (status 0: still not sent when the retries ran out)."""
    start = t0 + user.start_after
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    pending = list(user.votes)
    attempt = 0
    while True:
        failure = await _send_queue(host, port, user, pending, replies)
        if failure is None:
            return
        failures[failure] += 1
        if time.monotonic() - start > retry_for:
            now = time.monotonic()
            replies.extend(Reply(user.user_id, v, 0, 0.0, now, failure=failure) for v in pending)
            return
        await asyncio.sleep(random.random() * min(BACKOFF_MAX, BACKOFF_INITIAL * 2**attempt))
        attempt += 1


async def _send_queue(
    host: str, port: int, user: User, pending: list[QueuedVote], replies: list[Reply]
) -> str | None:
    """One connection: send ``pending`` oldest first, removing each vote answered; returns
    how the connection failed (None: every vote was answered)."""
    try:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(user.address, 0))
    except OSError as exc:
        return f"connect: {type(exc).__name__}"
    try:
        while pending:
            vote = pending[0]
            sent = time.monotonic()
            writer.write(_request(host, port, user.user_id, vote))
            status, body = await _read_reply(reader)
            now = time.monotonic()
            parsed = orjson.loads(body) if body.startswith(b"{") else {}
            replies.append(Reply(user.user_id, vote, status, now - sent, now, parsed))
            pending.pop(0)
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        return f"reply: {type(exc).__name__}"
    finally:
        writer.close()
    return None
