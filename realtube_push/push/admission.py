"""Who may open a live connection: load shedding per process, then the per-address cap.

Checked at every live handshake (WebSocket, ``GET /api/live/sse``), before the upgrade and
before any work for the connection:

1. **shedding** (``LIVE_ACCEPT_RATE``/``LIVE_ACCEPT_BURST``, ``LIVE_MAX_CONNECTIONS``,
   ``LIVE_SHED_LAG_MS``): a process admits new connections at most at a steady rate (a
   token bucket: ``burst`` at once, then ``rate`` per second), holds at most
   ``LIVE_MAX_CONNECTIONS``, and admits none while its connected clients' deltas wait
   longer than ``LIVE_SHED_LAG_MS`` for the fan-out (the hub's ``lag``). Past any of them,
   the handshake is refused with "try later" (503 ``OVERLOADED`` + ``Retry-After``). The
   wait is drawn per client from a window that grows with the herd (``Refusal``), so a herd
   refused together does not come back together. Local state only: a refusal costs
   nothing, not even a Redis call, which is the point while a herd knocks;
2. **the per-address cap** (``LIVE_MAX_CONNECTIONS_PER_IP``), fleet-wide through Redis
   (``push/slots``): 429.

A rate token spent on a connection the cap then refuses is given back: an address hammering
past its cap must not use up everyone else's admissions.

Why a lag test beside the rate: what a herd costs per admission depends on the machine and
on the replay each client needs, so no fixed rate both admits a herd quickly on a fast core
and leaves a slow one time for its connected clients. The fan-out's lag is what those
clients feel; while it is too long the door closes, and it opens again as soon as the
fan-out has caught up.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from realtube_push.observability import Metrics
from realtube_push.push.slots import AddressSlots

ShedReason = Literal["rate", "ceiling", "lag"]
MIN_WINDOW_SECONDS = 2  # the shortest window a wait is drawn from (1..2 s)
SHED_MEMORY_SECONDS = 1.0  # how long a refusal counts towards "the herd at the door"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a handshake was refused and, when shed, how long that client should wait.

    ``retry_after_ms`` is drawn uniformly from 1 s to the window; ``retry_after`` is the
    same wait in whole seconds (at least 1), for HTTP ``Retry-After``."""

    reason: ShedReason | Literal["address"]
    retry_after_ms: int = 0

    @property
    def retry_after(self) -> int:
        """The wait in whole seconds (HTTP ``Retry-After``)."""
        return max(1, round(self.retry_after_ms / 1000))


class TokenBucket:
    """``burst`` admissions at once, refilled at ``rate`` per second (0: unlimited)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        """Spend one token if there is one."""
        if self.rate <= 0:
            return True
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def give_back(self) -> None:
        """Return a token spent on an admission that did not happen."""
        if self.rate > 0:
            self._tokens = min(self.burst, self._tokens + 1)


class Admission:
    """This process's door for live connections (module docstring)."""

    def __init__(
        self,
        slots: AddressSlots,
        *,
        rate: float,
        burst: int,
        max_connections: int,
        max_retry_seconds: int,
        metrics: Metrics | None = None,
        lag: Callable[[], float] | None = None,
        max_lag_seconds: float = 0.0,
    ) -> None:
        self.slots = slots
        self.bucket = TokenBucket(rate, burst)
        self.max_connections = max_connections
        # the connected clients' wait (seconds, ``Hub.lag``) past which no one is admitted
        self._lag = lag
        self.max_lag_seconds = max_lag_seconds
        self.max_retry_seconds = max_retry_seconds
        self._metrics = metrics
        self._shed = 0.0  # refusals of the last second or so (decaying)
        self._shed_at = time.monotonic()

    async def admit(self, address: str, *, shed: bool = True) -> Refusal | None:
        """None: admitted, and the caller must ``release(address)`` exactly once when the
        connection ends. Else why not. ``shed=False`` skips shedding (the operator's own
        dashboard stream must open while the service sheds a herd)."""
        if shed:
            if self.slots.total >= self.max_connections:
                return self._refuse("ceiling")
            if self._lagging():
                return self._refuse("lag")
            if not self.bucket.take():
                return self._refuse("rate")
        if await self.slots.take(address):
            return None
        if shed:
            self.bucket.give_back()
        return Refusal("address")

    def _lagging(self) -> bool:
        return (
            self._lag is not None
            and self.max_lag_seconds > 0
            and self._lag() > self.max_lag_seconds
        )

    def release(self, address: str) -> None:
        """The connection ``admit`` let in has ended."""
        self.slots.release(address)

    def _refuse(self, reason: ShedReason) -> Refusal:
        if self._metrics is not None:
            self._metrics.live_shed.labels(reason).inc()
        now = time.monotonic()
        self._shed = self._shed * math.exp((self._shed_at - now) / SHED_MEMORY_SECONDS) + 1
        self._shed_at = now
        return Refusal(reason, random.randint(1000, self.window() * 1000))

    def window(self) -> int:
        """Seconds over which shed clients are spread: long enough that the herd refused in
        the last second comes back at about the rate admitted, 2 s at least, and at most
        ``LIVE_SHED_MAX_RETRY_SECONDS``."""
        rate = self.bucket.rate if self.bucket.rate > 0 else float(self.bucket.burst)
        wanted = math.ceil(self._shed / max(rate, 1.0))
        return max(MIN_WINDOW_SECONDS, min(self.max_retry_seconds, wanted))
