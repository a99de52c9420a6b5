"""``Ladder``: which transport the client uses next, from how the sessions ended (no I/O).

The transports form a ladder, best first (WebSocket, SSE, polling). Promises:

- the client falls one rung after ``fallback_after`` sessions in a row that never connected,
  or at once after a ``fatal`` ending; never below the last rung;
- a ``reconnect`` notice and a ``shed`` (the server is overloaded) keep the rung and count as
  no failure: they say nothing about the transport;
- a session that connected clears the failure count;
- while below the top, the top rung is probed every ``upgrade_interval`` seconds (the clock
  starts when the client leaves the top); a probe that ends without connecting walks back down
  rung by rung to where the client was, without waiting (it had a working transport), and the
  next probe is an interval after its return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from realtube_push.client.session import EndKind


@dataclass
class Ladder:
    """The rung in use (``level``, 0 = best) and what moves it."""

    rungs: int
    fallback_after: int
    upgrade_interval: float
    level: int = 0
    failures: int = 0  # consecutive sessions on this rung that never connected
    probe_from: int | None = None  # the rung to return to if the upgrade probe fails
    upgrade_at: float = math.inf  # when to probe the top rung (while below it)

    def probe_if_due(self, now: float) -> bool:
        """Move to the top rung for a probe if one is due at ``now``; returns whether it did."""
        if self.level == 0 or now < self.upgrade_at:
            return False
        self.probe_from, self.level, self.failures = self.level, 0, 0
        self.upgrade_at = now + self.upgrade_interval
        return True

    def time_to_probe(self, now: float) -> float:
        """Seconds until the next probe (infinite on the top rung)."""
        return self.upgrade_at - now if self.level > 0 else math.inf

    def connected(self) -> None:
        """A session on this rung connected: it works (any probe is over)."""
        self.failures, self.probe_from = 0, None

    def after(self, kind: EndKind, *, connected: bool, now: float) -> bool:
        """Record how a session that did not end in ``resync`` ended (``connected``: it had
        connected, and ``connected()`` was called); returns True if the rung changed (try the
        new one at once), False to try this one again after a wait."""
        if kind == "reconnect" or (kind == "shed" and self.probe_from is None):
            return False
        if not connected and self.probe_from is not None:
            self.level, self.failures = self.level + 1, 0
            if self.level >= self.probe_from:
                # back where it was: a full interval there before the next probe, so probes
                # slower than the interval cannot keep the client off its working transport
                self.level, self.probe_from = self.probe_from, None
                self.upgrade_at = now + self.upgrade_interval
            return True
        if not connected:
            self.failures += 1
        last = self.level == self.rungs - 1
        if not last and (kind == "fatal" or self.failures >= self.fallback_after):
            if self.level == 0:
                self.upgrade_at = now + self.upgrade_interval
            self.level, self.failures = self.level + 1, 0
            return True
        return False
