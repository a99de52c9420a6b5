"""Delta batches and the frames built from them, encoded once and shared.

A ``Batch`` is a contiguous seq range ``first..last`` of the sync log with its deltas (some
seqs may carry nothing for a given subscriber, never a hole in the range). A ``Frame`` is a
batch filtered for one subscription; its encodings are computed on first use and cached, so
ten thousand connections with the same subscription cost one encoding, not ten thousand.

Conflation: merging contiguous frames keeps only the latest delta per video/channel; the
merged frame covers the whole range, so a client applying it ends in the same state as one
that applied every frame.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from realtube_push.push import protocol
from realtube_push.push.framing import ws_message
from realtube_push.push.protocol import Codec, Subscription


@dataclass(frozen=True, slots=True)
class Delta:
    """One sync-log entry: seq, kind ("video"/"channel"), entity hash, wire item (with seq)."""

    seq: int
    kind: str
    entity_hash: str
    item: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        item = self.item
        return (self.kind, item["videoId"] if self.kind == "video" else item["channelId"])


@dataclass(slots=True)
class Batch:
    """A contiguous, committed range of the log as the hub fans it out."""

    epoch: str
    first: int
    last: int
    deltas: list[Delta]
    published_at: float = field(default_factory=time.time)

    def after(self, seq: int) -> Batch:
        """The part of this batch past ``seq`` (for trimming an overlap)."""
        return Batch(
            self.epoch,
            max(self.first, seq + 1),
            self.last,
            [d for d in self.deltas if d.seq > seq],
            self.published_at,
        )


def merge_batches(batches: Sequence[Batch]) -> Batch:
    """Contiguous batches as one (all deltas kept; frames conflate later, per subscription)."""
    if len(batches) == 1:
        return batches[0]
    deltas = [d for b in batches for d in b.deltas]
    return Batch(
        batches[0].epoch,
        batches[0].first,
        batches[-1].last,
        deltas,
        min(b.published_at for b in batches),
    )


class Frame:
    """A ``deltas`` frame for one subscription, with cached encodings."""

    __slots__ = (
        "_encoded",
        "_wire",
        "channels",
        "epoch",
        "first",
        "last",
        "published_at",
        "size",
        "videos",
    )

    def __init__(
        self,
        epoch: str,
        first: int,
        last: int,
        videos: list[dict[str, Any]],
        channels: list[dict[str, Any]],
        published_at: float,
    ) -> None:
        self.epoch = epoch
        self.first = first
        self.last = last
        self.videos = videos
        self.channels = channels
        self.published_at = published_at
        self.size = len(videos) + len(channels)  # how many deltas the frame carries
        self._encoded: dict[Codec, bytes | str] = {}
        self._wire: dict[Codec, bytes] = {}

    def encoded(self, codec: Codec) -> bytes | str:
        """The frame in ``codec``, computed once."""
        cached = self._encoded.get(codec)
        if cached is None:
            cached = self._encoded[codec] = protocol.encode(self.as_dict(), codec)
        return cached

    def wire(self, codec: Codec) -> bytes:
        """The frame as one complete WebSocket message in ``codec``, framed once."""
        cached = self._wire.get(codec)
        if cached is None:
            cached = self._wire[codec] = ws_message(self.encoded(codec))
        return cached

    def as_dict(self) -> dict[str, Any]:
        return protocol.deltas(
            epoch=self.epoch,
            first=self.first,
            last=self.last,
            videos=self.videos,
            channels=self.channels,
        )


def frame_for(batch: Batch, subscription: Subscription) -> Frame:
    """The batch filtered for a subscription, latest delta per entity."""
    videos: dict[str, dict[str, Any]] = {}
    channels: dict[str, dict[str, Any]] = {}
    for delta in batch.deltas:
        if delta.kind == "video":
            if subscription.wants_video(delta.entity_hash):
                videos[delta.item["videoId"]] = delta.item
        elif subscription.channels:
            channels[delta.item["channelId"]] = delta.item
    return Frame(
        batch.epoch,
        batch.first,
        batch.last,
        _by_seq(videos.values()),
        _by_seq(channels.values()),
        batch.published_at,
    )


def conflate(frames: Sequence[Frame]) -> tuple[Frame, int]:
    """Contiguous frames merged into one; returns it and how many deltas were superseded."""
    videos: dict[str, dict[str, Any]] = {}
    channels: dict[str, dict[str, Any]] = {}
    total = 0
    for frame in frames:
        total += frame.size
        for item in frame.videos:
            videos[item["videoId"]] = item
        for item in frame.channels:
            channels[item["channelId"]] = item
    merged = Frame(
        frames[0].epoch,
        frames[0].first,
        frames[-1].last,
        _by_seq(videos.values()),
        _by_seq(channels.values()),
        min(f.published_at for f in frames),
    )
    return merged, total - merged.size


def empty_frame(epoch: str, first: int, last: int) -> Frame:
    """A frame that only advances a filtered client's cursor over seqs it does not want."""
    return Frame(epoch, first, last, [], [], time.time())


def _by_seq(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda item: item["seq"])
