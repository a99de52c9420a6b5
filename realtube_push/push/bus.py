"""The delta bus, subscriber side: committed sync-log batches reach every instance's hub.

``publisher.py`` writes what is read here (the message format is described there).

Promises:
- delivery over pub/sub is at most once. Losing a message is survivable because each batch
  names its seq range: a subscriber that receives ``first_seq`` beyond the last seq it saw
  knows exactly which seqs to backfill (from ``sync:recent``, else PostgreSQL).
"""

from __future__ import annotations

import time
from typing import cast

import anyio
import asyncpg
import msgpack
import structlog
from redis.exceptions import RedisError

from realtube_push.push.frames import Batch, Delta
from realtube_push.push.hub import Hub
from realtube_push.services import Services
from realtube_push.store import synclog
from realtube_push.store.synclog import LoggedDelta

log = structlog.get_logger("realtube.bus")

BACKFILL_PAGE = 5_000


def unpack_deltas(packed: list[bytes]) -> list[Delta]:
    """Packed bus/recent-store deltas as hub deltas (the wire item carries its seq)."""
    deltas = []
    for raw in packed:
        seq, kind, entity_hash, payload = msgpack.unpackb(raw, raw=False)
        deltas.append(Delta(seq, kind, entity_hash, {**payload, "seq": seq}))
    return deltas


def logged_to_deltas(rows: list[LoggedDelta]) -> list[Delta]:
    """Sync-log rows (PostgreSQL) as hub deltas."""
    return [Delta(r.seq, r.kind, r.entity_hash, {**r.payload, "seq": r.seq}) for r in rows]


async def read_range(svc: Services, epoch: str, after: int, upto: int) -> list[Delta]:
    """Deltas ``after < seq <= upto`` of ``epoch`` (see ``read_range_from``)."""
    deltas, _ = await read_range_from(svc, epoch, after, upto)
    return deltas


async def read_range_from(
    svc: Services, epoch: str, after: int, upto: int
) -> tuple[list[Delta], str]:
    """Deltas ``after < seq <= upto`` of ``epoch`` and where they came from (``"redis"`` or
    ``"postgres"``): from Redis when it holds the whole range (recent store of the same epoch,
    no hole), else from the PostgreSQL sync log. ``LookupError`` when the log lacks some."""
    if upto <= after:
        return [], "redis"
    try:
        # the client returns bytes (no decode_responses): the epoch, and the members as packed
        recent_epoch = await svc.redis.get(svc.keys.recent_epoch)
        if recent_epoch == epoch.encode():
            members = await svc.redis.zrangebyscore(svc.keys.recent_deltas, after + 1, upto)
            if len(members) == upto - after:
                return unpack_deltas(cast("list[bytes]", members)), "redis"
    except RedisError as exc:
        svc.redis_outage.failed("recent_store", exc)
    else:
        svc.redis_outage.succeeded()
    rows = await synclog.read_after(svc.pool, after, limit=upto - after, upto=upto)
    if len(rows) != upto - after:
        raise LookupError(f"sync log lacks seqs {after + 1}..{upto}")
    return logged_to_deltas(rows), "postgres"


class BusSubscriber:
    """Feeds the hub from Redis pub/sub, gap-free.

    Every batch names its seq range. If a message arrives beyond the last seq ingested (a
    message was lost while Redis blipped or the subscription was re-established), the
    missing range is backfilled from the recent store or PostgreSQL before the batch is
    delivered; a periodic look at ``sync_meta.last_seq`` catches a lost *last* message.
    """

    def __init__(self, svc: Services, hub: Hub) -> None:
        self._svc = svc
        self._hub = hub
        self._lock = anyio.Lock()
        self.epoch = ""
        self.received = 0
        self.backfills = 0
        self.connected = False

    async def run(self) -> None:
        """Subscribe (reconnecting with backoff) and watch the log's tail, until cancelled."""
        pos = await synclog.position(self._svc.pool)
        self.epoch, self.received = pos.epoch, pos.last_seq
        self._hub.reset(pos.epoch, pos.last_seq)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_tail)
            await self._listen()

    async def _listen(self) -> None:
        backoff = 0.2
        while True:
            pubsub = self._svc.redis.pubsub()
            try:
                await pubsub.subscribe(self._svc.keys.deltas_channel)
                self._svc.redis_outage.succeeded()
                self.connected = True
                backoff = 0.2
                await self.catch_up()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                    if message is not None and message["type"] == "message":
                        await self.ingest_message(message["data"])
            except (RedisError, OSError) as exc:
                self.connected = False
                self._svc.redis_outage.failed("bus", exc)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.connected = False
                with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                    await pubsub.aclose()

    async def ingest_message(self, data: bytes) -> None:
        """One pub/sub message: backfill any gap before it, then deliver it."""
        message = msgpack.unpackb(data, raw=False)
        async with self._lock:
            if message["epoch"] != self.epoch:
                await self._reset_from_log()
                if message["epoch"] != self.epoch:
                    return
            first, last = message["first"], message["last"]
            if last <= self.received:
                return
            if first > self.received + 1:
                await self._backfill(first - 1)
            batch = Batch(
                self.epoch,
                first,
                last,
                unpack_deltas(message["deltas"]),
                message.get("ts", time.time()),
            )
            self._deliver(batch)

    async def catch_up(self) -> None:
        """Deliver whatever the log holds beyond what was received (after a reconnect)."""
        async with self._lock:
            pos = await synclog.position(self._svc.pool)
            if pos.epoch != self.epoch:
                await self._reset_from_log()
            elif pos.last_seq > self.received:
                await self._backfill(pos.last_seq)

    async def _watch_tail(self) -> None:
        interval = self._svc.settings.live_tail_check_seconds
        behind_since: float | None = None
        while True:
            await anyio.sleep(interval)
            try:
                pos = await synclog.position(self._svc.pool)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("tail_check_failed", exc_info=True)
                continue
            if pos.last_seq <= self.received and pos.epoch == self.epoch:
                behind_since = None
                continue
            # A message may be in flight right behind the commit: only act if still behind
            # one interval later.
            now = time.monotonic()
            if behind_since is None:
                behind_since = now
            elif now - behind_since >= interval:
                behind_since = None
                await self.catch_up()

    async def _reset_from_log(self) -> None:
        pos = await synclog.position(self._svc.pool)
        if pos.epoch != self.epoch:
            self.epoch, self.received = pos.epoch, pos.last_seq
            self._hub.reset(pos.epoch, pos.last_seq)

    async def _backfill(self, upto: int) -> None:
        self.backfills += 1
        self._svc.metrics.live_backfills.inc()
        while self.received < upto:
            end = min(upto, self.received + BACKFILL_PAGE)
            deltas = await read_range(self._svc, self.epoch, self.received, end)
            self._deliver(Batch(self.epoch, self.received + 1, end, deltas, time.time()))

    def _deliver(self, batch: Batch) -> None:
        if batch.first <= self.received:
            batch = batch.after(self.received)
        self._svc.metrics.live_published.inc(len(batch.deltas))
        self._hub.publish(batch)
        self.received = batch.last
