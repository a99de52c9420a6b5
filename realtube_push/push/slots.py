"""Per-address live connection slots, counted across every process that shares the Redis.

``LIVE_MAX_CONNECTIONS_PER_IP`` is a fleet-wide cap: every process of every instance
using the same Redis (and ``REDIS_NAMESPACE``) counts an address's connections in one place,
so neither ``WEB_CONCURRENCY`` nor several instances behind nginx multiply it.

Shape in Redis: one hash per address, ``live:slots:{<address hash>}`` (``cache.Keys``), with
one field per process: ``<process id>`` -> ``"<count> <expiry ms>"``. Promises:

- a take is one Lua call: it drops the fields of processes whose expiry passed, sums the
  rest and adds this process's slot only if the sum is under the cap (atomic, so concurrent
  handshakes on several processes never pass the cap together);
- a process refreshes the expiry of every address it holds every third of
  ``LIVE_SLOT_TTL_SECONDS``; a process that dies stops refreshing, and its slots free
  themselves once that expiry passes (a process that stops cleanly drops them at once);
- releases are counted locally at once (no await: they run in ``finally`` blocks that may be
  cancelled) and written to Redis by this module's task a moment later, or by the next take
  of the same address, which carries them in its own call, so a client that closes and
  reconnects is never refused by its own old slot;
- Redis trouble degrades to this process's own count (the cap then holds per process, not
  fleet-wide) and never refuses a connection; once a call succeeds again, this process's
  true counts are written back at once (``RedisOutage`` reports the outage once).

Counts in Redis only ever change by relative steps (+1 on a take, -n on a release), which
commute whichever connection of the pool carries them; a count is written as a whole only
to repair it: after a call whose outcome is unknown (Redis failed), or when the entry
vanished (Redis restarted). Keys hold the salted address hash, never the address.
"""

from __future__ import annotations

import math
from collections import Counter

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from realtube_push.cache import Keys
from realtube_push.logs import address_hash
from realtube_push.observability import RedisOutage

REFRESH_CHUNK = 500  # addresses per pipelined round trip of a refresh

# The two scripts' common parts: the time (Redis's clock, one for every process), and this
# process's count for the address written back with its expiry (or its entry dropped at 0);
# the key expires with its longest-lived entry.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
_WRITE_MINE = """
if mine > 0 then
  redis.call('HSET', KEYS[1], me, mine .. ' ' .. (now + ttl))
  if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
else
  redis.call('HDEL', KEYS[1], me)
end
"""

# ARGV: process id, cap, ttl ms, this process's releases not yet written, and its own count
# to write as it is (a repair) or -1. Returns {admitted (0/1), the address's slots after}.
_TAKE = (
    _NOW
    + """
local me, cap, ttl, give = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local own = tonumber(ARGV[5])
local entries = redis.call('HGETALL', KEYS[1])
local others, mine = 0, 0
for i = 1, #entries, 2 do
  local count, expiry = string.match(entries[i + 1], '^(%d+) (%d+)$')
  if tonumber(expiry) < now then
    redis.call('HDEL', KEYS[1], entries[i])
  elseif entries[i] == me then
    mine = tonumber(count)
  else
    others = others + tonumber(count)
  end
end
if own >= 0 then
  mine = own
else
  mine = math.max(mine - give, 0)
end
local admitted = 0
if others + mine < cap then
  mine = mine + 1
  admitted = 1
end
"""
    + _WRITE_MINE
    + """
return {admitted, others + mine}
"""
)

# ARGV: process id, ttl ms, releases to apply, this process's own count, '1' to write that
# count as it is (a repair). Applies the releases to the entry and extends its expiry; an
# entry that vanished is written from the own count. Returns 1 when it had vanished.
_REFRESH = (
    _NOW
    + """
local me, ttl, give, own = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local value = redis.call('HGET', KEYS[1], me)
local vanished = 0
local mine = own
if value and ARGV[5] ~= '1' then
  mine = math.max(tonumber(string.match(value, '^(%d+)')) - give, 0)
elseif not value and own > 0 then
  vanished = 1
end
"""
    + _WRITE_MINE
    + """
return vanished
"""
)


class AddressSlots:
    """This process's share of the fleet-wide per-address count (module docstring)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        outage: RedisOutage,
        *,
        process: str,
        salt: str,
        cap: int,
        ttl_seconds: float,
    ) -> None:
        self.cap = cap
        self._redis = redis
        self._keys = keys
        self._outage = outage
        self._process = process
        self._salt = salt.encode()
        self._ttl_ms = max(1, math.ceil(ttl_seconds * 1000))
        self._refresh_seconds = ttl_seconds / 3
        self._take = redis.register_script(_TAKE)
        self._refresh = redis.register_script(_REFRESH)
        self.held: Counter[str] = Counter()  # address -> slots held here, takes in flight too
        self.total = 0  # sum of ``held``: this process's live connections
        self._in_flight: Counter[str] = Counter()  # address -> takes awaiting Redis
        self._give: Counter[str] = Counter()  # address -> releases not yet in Redis
        self._repair: set[str] = set()  # addresses whose Redis count must be rewritten
        self._wake = anyio.Event()

    async def take(self, address: str) -> bool:
        """Take one of ``address``'s slots if the fleet-wide count is under the cap.

        True means the caller holds a slot and must ``release`` it exactly once. With Redis
        unreachable the answer is this process's own count against the cap."""
        mine_before = self.held[address]
        self.held[address] += 1
        self.total += 1
        self._in_flight[address] += 1
        give = self._give.pop(address, 0)
        # after a failed call (Redis was down) the count is written whole: the slots whose
        # takes completed, which is what this process holds beside the takes in flight
        own = self.held[address] - self._in_flight[address] if address in self._repair else -1
        self._repair.discard(address)
        try:
            admitted, _ = await self._take(
                keys=[self._key(address)],
                args=[self._process, self.cap, self._ttl_ms, give, own],
            )
        except RedisError as exc:
            self._outage.failed("live_slots", exc)
            # the call may or may not have run: the count is written whole once Redis answers
            self._repair.add(address)
            admitted = mine_before < self.cap
        else:
            self._outage.succeeded()
            if self._repair:
                self._wake.set()  # Redis is back: repair the other addresses now
        finally:
            self._in_flight[address] -= 1
            if not self._in_flight[address]:
                del self._in_flight[address]
        if not admitted:
            self._drop(address)
        return bool(admitted)

    def release(self, address: str) -> None:
        """Give back a slot ``take`` granted (no await: safe in a cancelled ``finally``)."""
        self._drop(address)
        self._give[address] += 1
        self._wake.set()

    def _drop(self, address: str) -> None:
        self.held[address] -= 1
        self.total -= 1
        if self.held[address] <= 0:
            del self.held[address]

    def _key(self, address: str) -> str:
        return self._keys.live_slots(address_hash(self._salt, address))

    async def run(self) -> None:
        """Write releases as they come and refresh every held address's expiry, until
        cancelled; then drop this process's slots (a clean stop frees them at once)."""
        try:
            next_refresh = anyio.current_time() + self._refresh_seconds
            while True:
                with anyio.move_on_after(max(0.0, next_refresh - anyio.current_time())):
                    await self._wake.wait()
                self._wake = anyio.Event()
                if anyio.current_time() >= next_refresh:
                    next_refresh = anyio.current_time() + self._refresh_seconds
                    await self._write(set(self.held) | set(self._give) | self._repair)
                elif self._give or self._repair:
                    await self._write(set(self._give) | self._repair)
        finally:
            with anyio.move_on_after(2, shield=True):
                self._repair |= set(self.held) | set(self._give)
                self.held.clear()
                await self._write(set(self._repair))

    async def _write(self, addresses: set[str]) -> None:
        """Releases and expiries of ``addresses`` in pipelined round trips (those with a
        take in flight are left to it: writing a count beside it could count it twice)."""
        pending = sorted(a for a in addresses if a not in self._in_flight)
        for start in range(0, len(pending), REFRESH_CHUNK):
            chunk = pending[start : start + REFRESH_CHUNK]
            repairing = [a in self._repair for a in chunk]
            gives = [self._give.pop(a, 0) for a in chunk]
            self._repair.difference_update(chunk)
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for address, give, repair in zip(chunk, gives, repairing, strict=True):
                        await self._refresh(
                            keys=[self._key(address)],
                            args=[
                                self._process,
                                self._ttl_ms,
                                give,
                                self.held[address],
                                "1" if repair else "",
                            ],
                            client=pipe,
                        )
                    vanished = await pipe.execute()
            except RedisError as exc:
                self._outage.failed("live_slots", exc)
                self._repair.update(chunk)
                continue
            self._outage.succeeded()
            # an entry that vanished (Redis restarted or flushed) was rebuilt from this
            # process's count, and a take may have run beside that: write it once more
            self._repair.update(a for a, lost in zip(chunk, vanished, strict=True) if lost)
