"""Reconnect delays: exponential growth with full jitter (AWS architecture blog's "Full Jitter").

Promise: the n-th consecutive delay is uniform in ``[0, min(cap, base * 2**n)]``, so a fleet of
clients dropped at the same moment (a deploy) spreads its reconnects over the whole window
instead of arriving in synchronized waves; ``reset()`` after a connection that worked.

Not tenacity's ``wait_random_exponential`` (the same formula): the state machine decides per
ending whether to back off, reset, or take the server's delay instead, and one backoff spans
reconnects and full syncs; tenacity models the retries of one call.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays of 0.5 s growing to 60 s by default, each drawn with full jitter."""

    base: float = 0.5
    cap: float = 60.0
    rand: Callable[[], float] = field(default=random.random, repr=False)
    attempt: int = 0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError("backoff needs 0 < base <= cap")

    def ceiling(self) -> float:
        """The upper bound of the next delay."""
        return min(self.cap, self.base * 2.0 ** min(self.attempt, 62))

    def next(self) -> float:
        """The next delay in seconds (and one step more for the one after)."""
        delay = self.rand() * self.ceiling()
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Start again from ``base`` (after a connection that worked)."""
        self.attempt = 0
