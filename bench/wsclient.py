"""A lean WebSocket subscriber for load tests: thousands per process.

Each connection is a bare asyncio Protocol that does the RFC 6455 handshake, sends one
``hello`` and then only splits incoming frames. Frames are byte-identical across
subscribers with the same subscription (the server encodes each once), so a frame is
decoded once per distinct payload and every connection only records when it arrived.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import msgpack

KEY_BYTES = 96


@dataclass
class FrameLog:
    """Arrival times per distinct frame payload, shared by all connections of a run."""

    decoded: dict[bytes, tuple[int, int, list[str]]] = field(default_factory=dict)
    arrivals: dict[bytes, list[float]] = field(default_factory=lambda: defaultdict(list))
    frames: int = 0
    deltas: int = 0
    bytes: int = 0
    welcomes: int = 0
    closes: list[int] = field(default_factory=list)
    welcomed: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    def on_message(self, payload: bytes, now: float) -> None:
        # Keyed by length + head (type, epoch and seq range come first in a frame): hashing
        # and copying whole multi-KB payloads for every arrival made the load generator
        # the bottleneck. Payloads with the same head carry the same seq range.
        key = payload[:KEY_BYTES] + len(payload).to_bytes(4, "big")
        info = self.decoded.get(key)
        if info is None:
            frame = msgpack.unpackb(payload, raw=False)
            kind = frame.get("t")
            if kind == "welcome":
                self.welcomes += 1
                if self.welcomes >= self.expected:
                    self.welcomed.set()
                return
            if kind != "deltas":
                return
            info = (frame["from"], frame["to"], [v["videoId"] for v in frame["videos"]])
            self.decoded[key] = info
        self.frames += 1
        self.deltas += len(info[2])
        self.bytes += len(payload)
        self.arrivals[key].append(now)


class Subscriber(asyncio.Protocol):
    """One WebSocket connection feeding a FrameLog."""

    def __init__(self, log: FrameLog, host: str, port: int, path: str, hello: dict) -> None:
        self.log = log
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            "Sec-WebSocket-Protocol: realtube.v1.msgpack\r\n\r\n"
        ).encode()
        self.hello = msgpack.packb(hello)
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def send_binary(self, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x82])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert self.transport is not None
        self.transport.write(head + mask + masked)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self.upgraded and not self.buffer and self._whole_frame(data, now):
            return
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                self.handshake_refused(bytes(self.buffer[: end + 4]))
                return
            del self.buffer[: end + 4]
            self.upgraded = True
            self.send_binary(self.hello)
        buf = self.buffer
        pos = 0
        while len(buf) - pos >= 2:
            opcode = buf[pos] & 0x0F
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if len(buf) - pos < 4:
                    break
                length = struct.unpack_from("!H", buf, pos + 2)[0]
                head = 4
            elif length == 127:
                if len(buf) - pos < 10:
                    break
                length = struct.unpack_from("!Q", buf, pos + 2)[0]
                head = 10
            if len(buf) - pos < head + length:
                break
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            if opcode == 0x2:
                self.on_payload(payload, now)
            elif opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                self.on_close_frame(code)
        del buf[:pos]

    def _whole_frame(self, data: bytes, now: float) -> bool:
        """The common case, kept cheap: ``data`` is exactly one binary frame."""
        if len(data) < 2 or data[0] != 0x82:
            return False
        length = data[1] & 0x7F
        head = 2
        if length == 126:
            length = int.from_bytes(data[2:4], "big")
            head = 4
        elif length == 127:
            length = int.from_bytes(data[2:10], "big")
            head = 10
        if len(data) != head + length:
            return False
        self.on_payload(data[head:], now)
        return True

    def on_payload(self, payload: bytes, now: float) -> None:
        """A binary message arrived (subclasses track more than the shared log)."""
        self.log.on_message(payload, now)

    def on_close_frame(self, code: int) -> None:
        """The server's Close frame arrived."""
        self.log.closes.append(code)

    def handshake_refused(self, head: bytes) -> None:
        """The server answered the upgrade with something else than 101."""
        raise ConnectionError(head[:200].decode(errors="replace"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


async def open_subscribers(
    log: FrameLog,
    host: str,
    port: int,
    count: int,
    *,
    hello: dict,
    parallel: int = 200,
    source: Callable[[int], str] | None = None,
) -> list[Subscriber]:
    """Open ``count`` connections, ``parallel`` at a time; waits for every welcome.
    ``source(i)`` is the i-th connection's local address (default: the system's choice)."""
    loop = asyncio.get_running_loop()
    subscribers: list[Subscriber] = []
    log.expected += count
    semaphore = asyncio.Semaphore(parallel)

    async def one(i: int) -> None:
        local = None if source is None else (source(i), 0)
        async with semaphore:
            _, proto = await loop.create_connection(
                lambda: Subscriber(log, host, port, "/api/live/ws", hello),
                host,
                port,
                local_addr=local,
            )
            subscribers.append(proto)

    await asyncio.gather(*(one(i) for i in range(count)))
    await asyncio.wait_for(log.welcomed.wait(), timeout=120)
    return subscribers
