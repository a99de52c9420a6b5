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
from realtube_push.push.context import LiveServices
from realtube_push.push.protocol import Hello
from realtube_push.push.replay import frame_end
from realtube_push.push.session import Session
from realtube_push.push.transport import count_written

# how old the pruning mark may be (it only grows; push/position.py says why that is safe)
PRUNE_MARK_MAX_AGE = 5.0


@dataclass(frozen=True, slots=True)
class Start:
    """The welcome to send (None when the session already holds a resync) and the gap."""

    welcome: dict[str, Any] | None
    replay_after: int = 0
    replay_upto: int = 0


async def begin(svc: LiveServices, session: Session, hello: Hello) -> Start:
    """Register ``session`` and decide how it starts.

    No database read per connection: the epoch and the head are the hub's, the pruning mark
    a shared copy at most ``PRUNE_MARK_MAX_AGE`` old; only a cursor ahead of the hub (its
    bus may lag the log) waits for a log read, shared by every handshake waiting for one.
    """
    hub = svc.hub
    pruned_through = 0
    log_head = 0
    log_epoch = hub.epoch
    if hello.seq is not None and hello.epoch == hub.epoch:
        # read before registering: no await after it
        pos = await svc.log_position.recent(PRUNE_MARK_MAX_AGE, hub.epoch)
        log_epoch, pruned_through = pos.epoch, pos.pruned_through
        if hello.seq > hub.seq:
            log_head = (await svc.log_position.fresh()).last_seq
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
    if hello.epoch != epoch or log_epoch != epoch:
        # (the second: the log was reset and this instance's bus has not noticed yet)
        reason = "epoch"
    elif seq > max(log_head, s0):
        reason = "ahead"
    elif seq >= s0:
        session.start_at(epoch, seq)
        return Start(welcome("live"))
    elif seq < pruned_through:
        reason = "retention"
    elif s0 - seq > svc.settings.live_replay_max:
        reason = "too_far"
    if reason is not None:
        session.start_at(epoch, seq)
        session.resync(reason, retry_after_ms=hub.resync_spread.draw_ms(len(hub.sessions)))
        svc.metrics.live_resyncs.labels(reason).inc()
        return Start(None)
    return Start(welcome("replay"), replay_after=seq, replay_upto=s0)


async def replay(svc: LiveServices, session: Session, start: Start) -> AsyncIterator[bytes | str]:
    """The gap as contiguous frames for the session's subscription, page by page, encoded in
    its codec and counted as written once the caller has sent each. Pages and frames are
    shared with the clients resuming at the same time (``push/replay.py``). A gap that
    leaves the retention window meanwhile ends the replay with a resync instead."""
    cache = svc.replay_cache
    after = start.replay_after
    try:
        while after < start.replay_upto:
            upto = frame_end(after, start.replay_upto, cache.page)
            frame = await cache.frame(
                session.epoch, after, upto, session.subscription, reach=start.replay_upto
            )
            yield frame.encoded(session.codec)
            count_written(svc.metrics, frame.size)
            after = upto
    except LookupError:
        hub = svc.hub
        session.resync("retention", retry_after_ms=hub.resync_spread.draw_ms(len(hub.sessions)))
