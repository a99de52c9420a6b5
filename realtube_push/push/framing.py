"""Server-to-client WebSocket messages, framed once (RFC 6455 section 5.2), whatever writes them.

Pure: no server in here. A shared frame is framed once (``ws_message``) and the same bytes
go to every socket (``push/direct.py`` writes them). What a server sends is the simplest
frame there is, so it is encoded here rather than through a library's internals:

- one frame per message (FIN set, never fragmented), opcode 0x1 for text, 0x2 for binary;
- RSV1-3 clear: even when permessage-deflate was negotiated a message may be sent
  uncompressed (RFC 7692 section 6), so pre-framed bytes fit every connection;
- unmasked (a server never masks, section 5.1);
- the payload length in 7 bits, or 126 + 16 bits, or 127 + 64 bits (network byte order),
  always the shortest form (section 5.2: "the minimal number of bytes MUST be used").
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81
_FIN_BINARY = 0x82
_LENGTH_16 = struct.Struct("!BBH")
_LENGTH_64 = struct.Struct("!BBQ")


def ws_message(payload: bytes | str) -> bytes:
    """One complete, unfragmented server-to-client WebSocket message (binary for bytes,
    text for str, UTF-8)."""
    if isinstance(payload, str):
        data, first = payload.encode(), _FIN_TEXT
    else:
        data, first = payload, _FIN_BINARY
    size = len(data)
    if size < 126:
        return bytes((first, size)) + data
    if size < 1 << 16:
        return _LENGTH_16.pack(first, 126, size) + data
    return _LENGTH_64.pack(first, 127, size) + data
