"""The client's view of live protocol v1 (docs/protocol.md): constants, codecs, an SSE parser.

Pure and backend-neutral: no I/O, no event loop, nothing from the server side (which pulls in
asyncpg, redis and quart). Promises:

- ``encode``/``decode`` round-trip the client's frames in either WebSocket subprotocol
  (binary MessagePack or JSON text); ``decode`` raises ``WireError`` for anything that is
  not a map with a string ``t``, never another exception type;
- ``SSEParser`` implements the WHATWG event-stream rules the server relies on (``event:``,
  ``data:``, ``id:``, ``retry:``, comments, any of CRLF/LF/CR as line ends, chunks split
  anywhere, even inside a CRLF) and reports comments too, because ``: ping`` is the SSE
  heartbeat a client uses to tell a quiet stream from a dead one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

VERSION = 1
MSGPACK_SUBPROTOCOL = "realtube.v1.msgpack"
JSON_SUBPROTOCOL = "realtube.v1.json"
MSGPACK_MIME = "application/msgpack"

WS_PATH = "/api/live/ws"
SSE_PATH = "/api/live/sse"
FULL_PATH = "/api/sync/full"
DELTA_PATH = "/api/sync/delta"

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

#: ``error`` codes that mean "this client misbehaves on this transport": retrying it in a
#: loop cannot help (docs/protocol.md, closes 4001, 1009 and 1008).
FATAL_ERROR_CODES = frozenset(
    {"BAD_FRAME", "UNKNOWN_TYPE", "BAD_HELLO", "HELLO_REQUIRED", "TOO_LARGE", "FLOOD"}
)
#: Close codes with the same meaning, for a close that came without its ``error`` frame.
FATAL_CLOSE_CODES = frozenset({CLOSE_PROTOCOL, CLOSE_TOO_LARGE, CLOSE_POLICY})


class WireError(ValueError):
    """A message from the server that is not a protocol frame."""


def normalize_buckets(buckets: Iterable[str] | None) -> tuple[str, ...] | None:
    """Buckets as a sorted tuple of 1-4 lowercase hex prefixes; None means everything.

    Raises ``ValueError`` for an empty list, more than 256 entries or a bad prefix, so a
    misconfigured client fails at construction, not with a ``BAD_HELLO`` at runtime.
    """
    if buckets is None:
        return None
    result = {b.strip().lower() for b in buckets if b.strip()}
    if not result or len(result) > MAX_BUCKETS:
        raise ValueError(f"buckets must hold 1..{MAX_BUCKETS} prefixes")
    for bucket in result:
        if not _BUCKET_RE.match(bucket):
            raise ValueError(f"bucket {bucket!r} is not 1-4 hex characters")
    return tuple(sorted(result))


def entity_hash(entity_id: str) -> str:
    """Lowercase hex SHA-256 of an id (UTF-8): what buckets are prefixes of."""
    return hashlib.sha256(entity_id.encode("utf-8")).hexdigest()


def in_buckets(video_id: str, buckets: Sequence[str] | None) -> bool:
    """Whether a subscription to ``buckets`` (None: everything) covers ``video_id``."""
    return buckets is None or entity_hash(video_id).startswith(tuple(buckets))


def hello(
    *,
    epoch: str | None,
    seq: int | None,
    buckets: Sequence[str] | None,
    channels: bool = True,
) -> dict[str, Any]:
    """The opening ``hello``: cursor (both or neither) and subscription."""
    frame: dict[str, Any] = {"t": "hello", "v": VERSION}
    if epoch is not None and seq is not None:
        frame["epoch"] = epoch
        frame["seq"] = seq
    if buckets is not None:
        frame["buckets"] = list(buckets)
    if not channels:
        frame["channels"] = False
    return frame


def ping(ident: object) -> dict[str, Any]:
    """A client heartbeat; the server answers ``pong`` with the same ``id``."""
    return {"t": "ping", "id": ident}


def pong(ident: object) -> dict[str, Any]:
    """The answer to a server ``ping``."""
    return {"t": "pong", "id": ident}


def encode(frame: dict[str, Any], *, binary: bool) -> bytes | str:
    """A client frame as MessagePack bytes (``binary``) or JSON text."""
    if binary:
        packed: bytes = msgpack.packb(frame)
        return packed
    return orjson.dumps(frame).decode()


def decode(data: bytes | bytearray | str) -> dict[str, Any]:
    """A server frame (bytes: MessagePack; str: JSON) as a dict with a string ``t``."""
    try:
        frame = orjson.loads(data) if isinstance(data, str) else msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise WireError("message is not valid MessagePack/JSON") from exc
    if not isinstance(frame, dict) or not isinstance(frame.get("t"), str):
        raise WireError("message is not a map with a string 't'")
    return frame


def decode_body(content: bytes, content_type: str) -> Any:
    """A REST body in the format its ``Content-Type`` names (MessagePack or JSON)."""
    try:
        if content_type.split(";")[0].strip().lower() == MSGPACK_MIME:
            return msgpack.unpackb(content, raw=False)
        return orjson.loads(content)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise WireError("response body is not valid MessagePack/JSON") from exc


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event (``comment`` is None) or one comment line (``comment`` set)."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    comment: str | None = None


class SSEParser:
    """Incremental ``text/event-stream`` parser: feed text chunks, get events and comments.

    >>> p = SSEParser()
    >>> [e.event for e in p.feed("event: deltas\\nid: 7\\ndata: {}\\n")]
    []
    >>> [(e.event, e.id, e.comment) for e in p.feed("\\n: ping\\n")]
    [('deltas', '7', None), ('message', None, 'ping')]

    ``last_event_id`` follows the spec: it keeps its value across events until an ``id:``
    line changes it. A block holding only ``retry:`` is reported with empty ``data``.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._pending_cr = False
        self._event = ""
        self._data: list[str] = []
        self._retry: int | None = None
        self._id_seen = False
        self.last_event_id: str | None = None

    def feed(self, text: str) -> list[SSEEvent]:
        """Parse a chunk; returns what it completed (a trailing partial line waits)."""
        if self._pending_cr:
            self._pending_cr = False
            if text.startswith("\n"):
                text = text[1:]
        if text.endswith("\r"):
            self._pending_cr = True
        text = self._buffer + text
        lines = re.split(r"\r\n|\r|\n", text)
        self._buffer = lines.pop()
        out: list[SSEEvent] = []
        for line in lines:
            item = self._line(line)
            if item is not None:
                out.append(item)
        return out

    def _line(self, line: str) -> SSEEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return SSEEvent(comment=line[1:].removeprefix(" "))
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
            self._id_seen = True
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        event = None
        if self._data or self._event or self._retry is not None:
            event = SSEEvent(
                event=self._event or "message",
                data="\n".join(self._data),
                id=self.last_event_id if self._id_seen else None,
                retry=self._retry,
            )
        self._event, self._data, self._retry, self._id_seen = "", [], None, False
        return event
