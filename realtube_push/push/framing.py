"""Server-to-client WebSocket messages, framed once (RFC 6455), whatever writes them.

Pure: no server in here. A shared frame is framed once (``ws_message``) and the same bytes
go to every socket (``push/direct.py`` writes them). Server frames are unmasked and, even
when permessage-deflate was negotiated, may be sent uncompressed (RFC 7692 section 6: RSV1
clear), so pre-framed bytes fit every connection.
"""

from __future__ import annotations

from wsproto.frame_protocol import FrameProtocol

_SERVER_FRAMER = FrameProtocol(client=False, extensions=[])


def ws_message(payload: bytes | str) -> bytes:
    """One complete, unfragmented server-to-client WebSocket message (binary for bytes,
    text for str)."""
    return bytes(_SERVER_FRAMER.send_data(payload, fin=True))
