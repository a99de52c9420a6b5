"""The server-frame encoder against a reference: wsproto's client side decodes every frame
``ws_message`` makes into the same message, and the bytes equal what wsproto's own server
framer makes (the shortest length form, no mask, no RSV bits)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol, Opcode

from realtube_push.push.framing import ws_message

# the boundaries of the three length forms (7 bits, 16 bits, 64 bits)
SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70000]


def decode_as_client(wire: bytes) -> list[tuple[Opcode, bool, bytes | str]]:
    """Frames as a client decodes them: (opcode, message finished, payload)."""
    client = FrameProtocol(client=True, extensions=[])
    client.receive_bytes(wire)
    return [(f.opcode, f.message_finished, f.payload) for f in client.received_frames()]


def reference(payload: bytes | str) -> bytes:
    return bytes(FrameProtocol(client=False, extensions=[]).send_data(payload, fin=True))


@pytest.mark.parametrize("size", SIZES)
def test_binary_messages_decode_and_match_the_reference_at_every_length_boundary(size):
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    wire = ws_message(payload)
    assert decode_as_client(wire) == [(Opcode.BINARY, True, payload)]
    assert wire == reference(payload)


@pytest.mark.parametrize("size", SIZES)
def test_text_messages_are_utf8_and_match_the_reference(size):
    payload = ("é" * size)[: max(size // 2, 0)] + "x" * (size - size // 2)
    wire = ws_message(payload)
    assert decode_as_client(wire) == [(Opcode.TEXT, True, payload)]
    assert wire == reference(payload)


def test_header_is_fin_opcode_unmasked_shortest_length():
    assert ws_message(b"ab")[:2] == b"\x82\x02"
    assert ws_message("ab")[:2] == b"\x81\x02"
    assert ws_message(b"x" * 126)[:4] == b"\x82\x7e\x00\x7e"
    assert ws_message(b"x" * 65536)[:10] == b"\x82\x7f" + (65536).to_bytes(8, "big")


@given(st.one_of(st.binary(max_size=70000), st.text(max_size=3000)))
def test_any_payload_round_trips(payload):
    wire = ws_message(payload)
    opcode = Opcode.TEXT if isinstance(payload, str) else Opcode.BINARY
    assert decode_as_client(wire) == [(opcode, True, payload)]
    assert wire == reference(payload)


def test_frames_written_back_to_back_decode_in_order():
    wire = ws_message(b"one") + ws_message("two") + ws_message(b"x" * 300)
    assert [payload for _, _, payload in decode_as_client(wire)] == [b"one", "two", b"x" * 300]
