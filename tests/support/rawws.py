"""A WebSocket client on a bare TCP socket, written from RFC 6455, for what a client library
will not do: send frames that break the protocol, see every frame the server writes in the
order it wrote them (data after a Close included), and leave the server's Close unanswered.
"""

from __future__ import annotations

import base64
import contextlib
import os
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import anyio.abc

from tests.support.live import MSGPACK, WS_PATH

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass(frozen=True)
class WireFrame:
    """One frame as it came off the wire."""

    fin: bool
    rsv: int  # the three RSV bits, RSV1 highest
    opcode: int
    payload: bytes

    @property
    def is_data(self) -> bool:
        """A data frame (text, binary or a continuation), as opposed to a control frame."""
        return self.opcode < CLOSE

    @property
    def close_code(self) -> int | None:
        """The status code of a Close frame (None when it carries none)."""
        assert self.opcode == CLOSE, self
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None


def encode_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
) -> bytes:
    """A frame as a client sends it (masked unless told otherwise, whatever its flaws)."""
    head = bytearray([(0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode])
    mask_bit = 0x80 if masked else 0
    size = len(payload)
    if size < 126:
        head.append(mask_bit | size)
    elif size < 1 << 16:
        head += struct.pack("!BH", mask_bit | 126, size)
    else:
        head += struct.pack("!BQ", mask_bit | 127, size)
    if not masked:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawWebSocket:
    """An open connection to the live endpoint, after the handshake."""

    def __init__(self, stream: anyio.abc.SocketStream, rest: bytes) -> None:
        self.stream = stream
        self._buffer = bytearray(rest)
        self._eof = False

    async def send_frame(
        self, opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True
    ) -> None:
        """Send one frame (``fin``, ``rsv`` and ``masked`` can break the rules)."""
        await self.stream.send(encode_frame(opcode, payload, fin=fin, rsv=rsv, masked=masked))

    async def send_message(self, data: bytes | str) -> None:
        """One well-formed message: binary for bytes, text for str."""
        if isinstance(data, str):
            await self.send_frame(TEXT, data.encode())
        else:
            await self.send_frame(BINARY, data)

    async def send_close(self, code: int = 1000) -> None:
        await self.send_frame(CLOSE, struct.pack("!H", code))

    async def next_frame(self, *, within: float = 10.0) -> WireFrame | None:
        """The next frame the server wrote, or None once it closed the TCP connection."""
        with anyio.fail_after(within):
            while True:
                frame = self._parse()
                if frame is not None or self._eof:
                    return frame
                try:
                    self._buffer += await self.stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                    self._eof = True

    async def frames_until_eof(self, *, within: float = 10.0) -> list[WireFrame]:
        """Every frame the server writes from now until it closes the TCP connection."""
        frames = []
        with anyio.fail_after(within):
            while (frame := await self.next_frame(within=within)) is not None:
                frames.append(frame)
        return frames

    def _parse(self) -> WireFrame | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        size, offset = buf[1] & 0x7F, 2
        if size == 126:
            if len(buf) < 4:
                return None
            size, offset = struct.unpack_from("!H", buf, 2)[0], 4
        elif size == 127:
            if len(buf) < 10:
                return None
            size, offset = struct.unpack_from("!Q", buf, 2)[0], 10
        key = b""
        if buf[1] & 0x80:  # a server must not mask; keep the bytes honest all the same
            key, offset = bytes(buf[offset : offset + 4]), offset + 4
        if len(buf) < offset + size:
            return None
        payload = bytes(buf[offset : offset + size])
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        frame = WireFrame(bool(buf[0] & 0x80), (buf[0] >> 4) & 0x7, buf[0] & 0xF, payload)
        del buf[: offset + size]
        return frame


@contextlib.asynccontextmanager
async def raw_ws(port: int, *, protocol: str = MSGPACK) -> AsyncIterator[RawWebSocket]:
    """A WebSocket to the live endpoint on ``port`` (handshake done, no hello sent)."""
    stream = await anyio.connect_tcp("127.0.0.1", port)
    async with stream:
        key = base64.b64encode(os.urandom(16)).decode()
        await stream.send(
            (
                f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
            ).encode()
        )
        head = b""
        with anyio.fail_after(10):
            while b"\r\n\r\n" not in head:
                head += await stream.receive()
        response, _, rest = head.partition(b"\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 101"), response
        yield RawWebSocket(stream, rest)
