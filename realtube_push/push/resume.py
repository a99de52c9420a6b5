"""Where a new connection starts: fresh, live, replay of its gap, or resync.

Promise: a client that sends the cursor ``(epoch, seq)`` it last applied receives every
later delta exactly once, in order, or is told to resync. The session is registered with
the hub *before* the gap is read, so batches arriving during the replay wait in its queue
(the hub feeds it after position ``s0``; the replay covers ``seq < s <= s0``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from realtube_push.push import protocol
from realtube_push.push.bus import read_range
from realtube_push.push.context import LiveServices
from realtube_push.push.frames import Batch, frame_for
from realtube_push.push.protocol import Hello
from realtube_push.push.session import Session
from realtube_push.push.transport import count_written
from realtube_push.store import synclog

REPLAY_PAGE = 1_000


@dataclass(frozen=True, slots=True)
class Start:
    """The welcome to send (None when the session already holds a resync) and the gap."""

    welcome: dict[str, Any] | None
    replay_after: int = 0
    replay_upto: int = 0


async def begin(svc: LiveServices, session: Session, hello: Hello) -> Start:
    """Register ``session`` and decide how it starts."""
    pos = await synclog.position(svc.pool)  # read before registering: no await after it
    hub = svc.hub
    epoch, s0 = hub.register(session)
    session.start_at(epoch, s0)

    def welcome(resume: str) -> dict[str, Any]:
        return protocol.welcome(
            epoch=epoch,
            seq=s0,
            instance=hub.instance,
            heartbeat=svc.settings.live_heartbeat_seconds,
            resume=resume,
        )

    if hello.seq is None:
        return Start(welcome("fresh"))
    seq = hello.seq
    reason = None
    if hello.epoch != epoch:
        reason = "epoch"
    elif seq > max(pos.last_seq, s0):
        reason = "ahead"
    elif seq >= s0:
        session.start_at(epoch, seq)
        return Start(welcome("live"))
    elif seq < pos.pruned_through:
        reason = "retention"
    elif s0 - seq > svc.settings.live_replay_max:
        reason = "too_far"
    if reason is not None:
        session.start_at(epoch, seq)
        session.resync(reason)
        svc.metrics.live_resyncs.labels(reason).inc()
        return Start(None)
    return Start(welcome("replay"), replay_after=seq, replay_upto=s0)


async def replay(svc: LiveServices, session: Session, start: Start) -> AsyncIterator[bytes | str]:
    """The gap as contiguous frames for the session's subscription (pages of the log),
    encoded in its codec and counted as written once the caller has sent each. A gap that
    leaves the retention window meanwhile ends the replay with a resync instead."""
    after = start.replay_after
    try:
        while after < start.replay_upto:
            upto = min(start.replay_upto, after + REPLAY_PAGE)
            deltas = await read_range(svc, session.epoch, after, upto)
            frame = frame_for(Batch(session.epoch, after + 1, upto, deltas), session.subscription)
            yield frame.encoded(session.codec)
            count_written(svc.metrics, frame.size)
            after = upto
    except LookupError:
        session.resync("retention")
