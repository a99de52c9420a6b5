"""Wire protocol v1 of the live channel (docs/protocol.md): frame shapes, codecs, close codes.

Pure: no I/O. Server frames are plain dicts built here; client frames are decoded and
validated here, raising ``ProtocolError`` with the documented error code.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

VERSION = 1
MSGPACK_SUBPROTOCOL = "realtube.v1.msgpack"
JSON_SUBPROTOCOL = "realtube.v1.json"
MAX_BUCKETS = 256
_BUCKET_RE = re.compile(r"[0-9a-f]{1,4}\Z")

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TOO_LARGE = 1009
CLOSE_SERVER_ERROR = 1011
CLOSE_RESTART = 1012
CLOSE_TRY_LATER = 1013
CLOSE_RESYNC = 4000
CLOSE_PROTOCOL = 4001
CLOSE_IDLE = 4002


class Codec(enum.Enum):
    """How frames travel: binary MessagePack, JSON text (WebSocket), or SSE events."""

    MSGPACK = "msgpack"
    JSON = "json"
    SSE = "sse"


class ProtocolError(Exception):
    """A client message the server cannot accept; ``code`` is the documented error code."""

    def __init__(self, code: str, message: str, close_code: int = CLOSE_PROTOCOL) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a client wants: all videos (``buckets`` None) or hash-prefix buckets; channels?"""

    buckets: tuple[str, ...] | None = None
    channels: bool = True

    def wants_video(self, entity_hash: str) -> bool:
        return self.buckets is None or entity_hash.startswith(self.buckets)


@dataclass(frozen=True, slots=True)
class Hello:
    """A client's opening message: its cursor (if any) and its subscription."""

    epoch: str | None
    seq: int | None
    subscription: Subscription


def encode(frame: dict[str, Any], codec: Codec) -> bytes | str:
    """One server frame in the connection's codec."""
    if codec is Codec.MSGPACK:
        return msgpack.packb(frame)
    if codec is Codec.JSON:
        return orjson.dumps(frame).decode()
    return sse_event(frame)


def sse_event(frame: dict[str, Any]) -> bytes:
    """An SSE event: ``event:`` = frame type, ``id:`` = cursor for deltas, JSON ``data:``.

    Heartbeats are comments; a reconnect notice also sets the browser's ``retry:`` delay.
    """
    kind = frame["t"]
    if kind == "ping":
        return b": ping\n\n"
    head = f"event: {kind}\n"
    if kind == "deltas":
        head += f"id: {frame['to']}\n"
    elif kind == "reconnect":
        head += f"retry: {frame['retryAfterMs']}\n"
    return head.encode() + b"data: " + orjson.dumps(frame) + b"\n\n"


def decode_client(data: bytes | str, *, max_bytes: int) -> dict[str, Any]:
    """A client message as a dict; ``ProtocolError`` when too large or not a map."""
    if len(data) > max_bytes:
        raise ProtocolError(
            "TOO_LARGE", f"messages are limited to {max_bytes} bytes", CLOSE_TOO_LARGE
        )
    try:
        if isinstance(data, str):
            frame = orjson.loads(data)
        else:
            frame = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise ProtocolError("BAD_FRAME", "message is not valid MessagePack/JSON") from exc
    if not isinstance(frame, dict) or not isinstance(frame.get("t"), str):
        raise ProtocolError("BAD_FRAME", "message must be a map with a string 't'")
    return frame


def parse_hello(frame: dict[str, Any]) -> Hello:
    """Validate a ``hello`` frame."""
    if frame.get("t") != "hello":
        raise ProtocolError("HELLO_REQUIRED", "the first message must be 'hello'")
    if frame.get("v", VERSION) != VERSION:
        raise ProtocolError("BAD_HELLO", f"unsupported protocol version {frame.get('v')!r}")
    epoch, seq = frame.get("epoch"), frame.get("seq")
    if epoch is not None and (not isinstance(epoch, str) or len(epoch) > 64):
        raise ProtocolError("BAD_HELLO", "epoch must be a string")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
        raise ProtocolError("BAD_HELLO", "seq must be a non-negative integer")
    if (seq is None) != (epoch is None):
        raise ProtocolError("BAD_HELLO", "send both epoch and seq, or neither")
    channels = frame.get("channels", True)
    if not isinstance(channels, bool):
        raise ProtocolError("BAD_HELLO", "channels must be a boolean")
    return Hello(epoch, seq, Subscription(parse_buckets(frame.get("buckets")), channels))


def parse_buckets(raw: object) -> tuple[str, ...] | None:
    """Buckets as a sorted tuple of 1-4 lowercase hex chars; None means everything."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw or len(raw) > MAX_BUCKETS:
        raise ProtocolError("BAD_HELLO", f"buckets must be a list of 1..{MAX_BUCKETS} prefixes")
    buckets: set[str] = set()
    for item in raw:
        if not isinstance(item, str) or not _BUCKET_RE.match(item.lower()):
            raise ProtocolError("BAD_HELLO", f"bucket {item!r} is not 1-4 hex characters")
        buckets.add(item.lower())
    return tuple(sorted(buckets))


def welcome(
    *, epoch: str, seq: int, instance: str, heartbeat: float, resume: str
) -> dict[str, Any]:
    return {
        "t": "welcome",
        "v": VERSION,
        "epoch": epoch,
        "seq": seq,
        "instance": instance,
        "heartbeat": heartbeat,
        "resume": resume,
    }


def deltas(
    *,
    epoch: str,
    first: int,
    last: int,
    videos: list[dict[str, Any]],
    channels: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "t": "deltas",
        "epoch": epoch,
        "from": first,
        "to": last,
        "videos": videos,
        "channels": channels,
    }


def resync(*, epoch: str, seq: int, reason: str, retry_after_ms: int = 0) -> dict[str, Any]:
    return {
        "t": "resync",
        "epoch": epoch,
        "seq": seq,
        "reason": reason,
        "retryAfterMs": retry_after_ms,
    }


def reconnect(*, reason: str, retry_after_ms: int) -> dict[str, Any]:
    return {"t": "reconnect", "reason": reason, "retryAfterMs": retry_after_ms}


def error(code: str, message: str) -> dict[str, Any]:
    return {"t": "error", "code": code, "message": message}


def ping(ident: object) -> dict[str, Any]:
    return {"t": "ping", "id": ident}


def pong(ident: object) -> dict[str, Any]:
    return {"t": "pong", "id": ident}
