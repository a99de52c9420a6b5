"""Spreading a herd: the per-connection delays the server hands out when it sends many
clients away at once (``reconnect`` on shutdown, ``resync`` on an epoch change).

Pure: no I/O. Why a window that grows with the number of connections: a fixed delay of one
second makes ten thousand clients of a stopped instance arrive at the next one within that
second, however well each one jitters. Drawing each connection's delay uniformly over
``connections / rate`` seconds brings them back at about ``rate`` a second instead (bounded
by ``min_ms`` and ``max_ms``), whatever the instance held.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HerdSpread:
    """How to spread ``connections`` clients sent away together: about ``rate`` a second,
    over a window of at least ``min_ms`` and at most ``max_ms``."""

    rate: float
    min_ms: int
    max_ms: int

    def window_ms(self, connections: int) -> int:
        """The window the delays are drawn over for a herd of ``connections`` clients."""
        wanted = connections * 1000 / self.rate if self.rate > 0 else self.max_ms
        return int(min(max(wanted, self.min_ms), max(self.max_ms, self.min_ms)))

    def draw_ms(self, connections: int) -> int:
        """One connection's delay in a herd of ``connections``: drawn uniformly over the
        window (full jitter), fresh for each connection."""
        return random.randint(0, self.window_ms(connections))
