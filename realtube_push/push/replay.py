"""Replay pages shared by the clients resuming together.

A herd of clients coming back from a stopped instance resumes from the same or nearby
cursors. Read and encoded per client, its replay cost one storage read and one encoding per
client and page; here the log is cut into fixed pages (seqs ``k*PAGE+1 .. (k+1)*PAGE``) and
a client's gap into the same pages (its first page starts at its cursor, its last ends at
the hub's head when it registered, cut before its last few seqs so that clients registered
at nearby heads share most of it: ``frame_end``), so clients share:

- the page's deltas, read once from storage (the Redis recent store, PostgreSQL only for
  what it no longer holds) by the first client that needs them while the others wait for
  that read, and kept for ``ttl`` seconds (a later client needing more of the newest page
  reads only the seqs past what is kept);
- the page's frame per subscription, built and encoded (per codec, ``Frame``) once.

Why this is safe: a seq's delta never changes within an epoch, and every key names its
epoch; frames are immutable. The cache is bounded (``max_pages``, and ``max_frame_deltas``
deltas over all its frames; oldest out first) and only holds what herds asked for recently.

``realtube_live_replay_pages_total{source}`` counts each page a client was sent by where its
deltas came from (``shared``: this cache, no read), ``realtube_live_replay_frames_total``
whether its frame was built or shared.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import anyio

from realtube_push.push.bus import read_range_from
from realtube_push.push.frames import Batch, Delta, Frame, frame_for
from realtube_push.push.protocol import Subscription
from realtube_push.services import Services

PAGE = 1_000
# The gap's last page ends at the hub's head, which moves with every batch: clients that
# registered at different heads would share nothing of it. It is cut at the last multiple
# of TAIL_STEP instead, and only the few seqs past that make a frame of their own.
TAIL_STEP = 64
# A herd's clients were live seconds ago: their gaps lie in the last page or two, so a few
# pages serve it. The bounds are the process's whole replay memory, whatever a client resuming
# from far behind asks for: deltas held as pages, and deltas held in built frames (each with
# its encodings), a few MB each at about a KB per delta.
MAX_PAGES = 4
MAX_FRAME_DELTAS = 4 * PAGE
TTL_SECONDS = 30.0

FrameKey = tuple[str, int, int, Subscription]


def frame_end(after: int, upto: int, page: int = PAGE) -> int:
    """Where the replay frame that starts after seq ``after`` ends (``upto`` at most): at
    the end of its page, or in the gap's last page before its tail (see ``TAIL_STEP``)."""
    end = (after // page + 1) * page
    if end <= upto:
        return end
    tail = upto - upto % TAIL_STEP
    return tail if tail > after else upto


@dataclass(slots=True)
class _Page:
    """Deltas of seqs ``start+1 .. end`` of one page, one per seq, in order."""

    start: int
    end: int
    deltas: list[Delta]
    stored_at: float

    def slice(self, after: int, upto: int) -> list[Delta]:
        return self.deltas[after - self.start : upto - self.start]


class ReplayCache:
    """The shared pages and frames of the replays in progress (one per process)."""

    def __init__(
        self,
        svc: Services,
        *,
        page: int = PAGE,
        max_pages: int = MAX_PAGES,
        max_frame_deltas: int = MAX_FRAME_DELTAS,
        ttl: float = TTL_SECONDS,
    ) -> None:
        self._svc = svc
        self.page = page
        self._max_pages = max_pages
        self._max_frame_deltas = max_frame_deltas
        self._frame_deltas = 0  # deltas held by the frames of ``_frames``
        self._ttl = ttl
        # insertion order is age order (entries are never refreshed in place), so the
        # expired ones are always at the front
        self._pages: OrderedDict[tuple[str, int], _Page] = OrderedDict()
        self._frames: OrderedDict[FrameKey, tuple[Frame, float]] = OrderedDict()
        self._reading: dict[tuple[str, int], anyio.Lock] = {}

    async def frame(
        self, epoch: str, after: int, upto: int, subscription: Subscription, *, reach: int
    ) -> Frame:
        """The frame of seqs ``after+1 .. upto`` (within one page, see ``frame_end``) for
        ``subscription``; the client's replay goes on to ``reach``, so a read of this page
        takes that much of it too. ``LookupError`` when the log no longer holds them all."""
        metrics = self._svc.metrics
        now = time.monotonic()
        self._expire(now)
        key = (epoch, after, upto, subscription)
        cached = self._frames.get(key)
        if cached is not None:
            metrics.live_replay_pages.labels("shared").inc()
            metrics.live_replay_frames.labels("shared").inc()
            return cached[0]
        deltas = await self._deltas(epoch, after, upto, reach)
        cached = self._frames.get(key)  # built by another client while this one waited
        if cached is not None:
            metrics.live_replay_frames.labels("shared").inc()
            return cached[0]
        frame = frame_for(Batch(epoch, after + 1, upto, deltas), subscription)
        self._frames[key] = (frame, time.monotonic())
        self._frame_deltas += frame.size
        while self._frame_deltas > self._max_frame_deltas and len(self._frames) > 1:
            self._drop_oldest_frame()
        metrics.live_replay_frames.labels("built").inc()
        return frame

    async def _deltas(self, epoch: str, after: int, upto: int, reach: int) -> list[Delta]:
        """Seqs ``after+1 .. upto`` from the shared page, read (once, as far as ``reach``
        within the page) if it lacks them."""
        key = (epoch, after // self.page)
        page = self._pages.get(key)
        if page is not None and page.end >= upto:
            self._svc.metrics.live_replay_pages.labels("shared").inc()
            return page.slice(after, upto)
        lock = self._reading.setdefault(key, anyio.Lock())
        try:
            async with lock:
                return await self._read(key, after, upto, reach)
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._reading.pop(key, None)

    async def _read(self, key: tuple[str, int], after: int, upto: int, reach: int) -> list[Delta]:
        """Under the page's lock: what another reader may have read meanwhile, else a read
        from the page's start (or what is kept of it) so that later clients find it too."""
        metrics = self._svc.metrics
        page = self._pages.get(key)
        if page is not None and page.end >= upto:
            metrics.live_replay_pages.labels("shared").inc()
            return page.slice(after, upto)
        epoch, number = key
        start = number * self.page
        begin = page.end if page is not None else start
        end = max(upto, min(reach, start + self.page))
        try:
            more, source = await read_range_from(self._svc, epoch, begin, end)
        except LookupError:
            if begin >= after:
                raise
            # the page's first seqs are gone (pruned) while this client's may not be: read
            # just its own range, unshared
            deltas, source = await read_range_from(self._svc, epoch, after, upto)
            metrics.live_replay_pages.labels(source).inc()
            return deltas
        metrics.live_replay_pages.labels(source).inc()
        # a new list: slices handed out of the old one stay as they were
        kept = page.deltas if page is not None else []
        page = _Page(start, end, kept + more, time.monotonic())
        self._pages.pop(key, None)
        self._pages[key] = page
        while len(self._pages) > self._max_pages:
            self._pages.popitem(last=False)
        return page.slice(after, upto)

    def _expire(self, now: float) -> None:
        pages, frames = self._pages, self._frames
        while pages and now - next(iter(pages.values())).stored_at >= self._ttl:
            pages.popitem(last=False)
        while frames and now - next(iter(frames.values()))[1] >= self._ttl:
            self._drop_oldest_frame()

    def _drop_oldest_frame(self) -> None:
        _, (frame, _) = self._frames.popitem(last=False)
        self._frame_deltas -= frame.size
