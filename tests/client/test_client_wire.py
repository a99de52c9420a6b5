"""The client's wire helpers and backoff, without a server."""

from __future__ import annotations

import msgpack
import pytest

from realtube_push.client import Backoff
from realtube_push.client.wire import (
    SSEEvent,
    SSEParser,
    WireError,
    decode,
    encode,
    hello,
    normalize_buckets,
)


def test_hello_carries_cursor_and_buckets_only_when_given():
    assert hello(epoch=None, seq=None, buckets=None) == {"t": "hello", "v": 1}
    assert hello(epoch="e", seq=4, buckets=("ab",), channels=False) == {
        "t": "hello",
        "v": 1,
        "epoch": "e",
        "seq": 4,
        "buckets": ["ab"],
        "channels": False,
    }


@pytest.mark.parametrize("binary", [True, False])
def test_frames_round_trip_in_both_subprotocols(binary):
    frame = {"t": "ping", "id": 7}
    data = encode(frame, binary=binary)
    assert isinstance(data, bytes if binary else str)
    assert decode(data) == frame


@pytest.mark.parametrize(
    "data", [b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"x": 1}), "{", '{"t": 3}']
)
def test_undecodable_or_typeless_message_is_a_wire_error(data):
    with pytest.raises(WireError):
        decode(data)


@pytest.mark.parametrize(
    "buckets", [[], ["xyz"], ["abcde"], ["0"] * 0, [f"{i:x}" for i in range(300)]]
)
def test_bad_buckets_are_refused_before_any_connection(buckets):
    with pytest.raises(ValueError, match="bucket"):
        normalize_buckets(buckets)


def test_buckets_are_lowercased_deduplicated_and_sorted():
    assert normalize_buckets(["C3", "ab", "c3"]) == ("ab", "c3")


def test_sse_parser_handles_split_chunks_crlf_comments_and_multiline_data():
    parser = SSEParser()
    stream = 'retry: 2000\r\n\r\nevent: welcome\r\ndata: {"t":\r\ndata: 1}\r\n\r\n: ping\r\n'
    stream += "event: deltas\nid: 12\ndata: {}\n\n"
    events: list[SSEEvent] = []
    for i in range(0, len(stream), 3):  # chunks split anywhere, CRLF included
        events.extend(parser.feed(stream[i : i + 3]))
    assert events == [
        SSEEvent(event="message", data="", retry=2000),
        SSEEvent(event="welcome", data='{"t":\n1}'),
        SSEEvent(comment="ping"),
        SSEEvent(event="deltas", data="{}", id="12"),
    ]
    assert parser.last_event_id == "12"


def test_sse_parser_waits_for_the_blank_line_before_dispatching():
    parser = SSEParser()
    assert parser.feed("event: deltas\ndata: {}\n") == []
    assert parser.feed("\n") == [SSEEvent(event="deltas", data="{}")]


def test_backoff_grows_exponentially_to_the_cap_with_full_jitter():
    top = Backoff(base=0.5, cap=60.0, rand=lambda: 1.0)
    assert [top.next() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 32, 60, 60]
    bottom = Backoff(rand=lambda: 0.0)
    assert bottom.next() == 0.0
    top.reset()
    assert top.next() == 0.5


def test_backoff_delays_stay_within_the_window():
    backoff = Backoff(base=0.5, cap=4.0)
    for _ in range(50):
        ceiling = backoff.ceiling()
        assert 0.0 <= backoff.next() <= ceiling <= 4.0
