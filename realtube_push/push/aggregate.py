"""The admin topic's ``stats`` event: instance snapshots summed, with windowed lag
percentiles. Pure: no I/O, no clock of its own (the caller passes ``now``).

Fan-out lag percentiles are computed from the summed histogram buckets over the last
``LAG_WINDOW_SECONDS``, because percentiles of separate instances cannot be merged but bucket
counts can.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any, Final

LAG_WINDOW_SECONDS: Final = 10.0
TRANSPORTS: Final = ("ws", "sse", "admin")


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus-style quantile (linear within a bucket) of cumulative bucket counts."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _merge(bucket_lists: Iterable[list[Any]]) -> dict[float, float]:
    """Bucket counts of several instances summed per bound (``"+Inf"`` -> ``inf``)."""
    merged: dict[float, float] = {}
    for pairs in bucket_lists:
        for bound, count in pairs:
            key = float(bound)
            merged[key] = merged.get(key, 0.0) + count
    return merged


class Aggregator:
    """Sums instance snapshots; keeps a short history of lag buckets for windowed percentiles."""

    def __init__(self, window: float = LAG_WINDOW_SECONDS) -> None:
        self.window = window
        self._history: deque[tuple[float, dict[float, float]]] = deque()

    def aggregate(self, snapshots: list[dict[str, Any]], now: float) -> dict[str, Any]:
        """The ``stats`` event body for these snapshots."""
        connections = {t: 0 for t in TRANSPORTS}
        for snap in snapshots:
            for transport, count in snap["connections"].items():
                connections[transport] = connections.get(transport, 0) + count
        lag_buckets = _merge(s["fanoutLagBuckets"] for s in snapshots)
        p50, p99, samples = self._lag(lag_buckets, now)
        depths = [
            s["scoreQueue"]["depth"] for s in snapshots if s["scoreQueue"]["depth"] is not None
        ]
        lags = [
            s["scoreQueue"]["lagSeconds"]
            for s in snapshots
            if s["scoreQueue"]["lagSeconds"] is not None
        ]
        return {
            "t": "stats",
            "at": now,
            "instances": [
                {
                    "instance": s["instance"],
                    "uptime": s["uptime"],
                    "connections": s["connections"],
                    "dbPool": s["dbPool"],
                    "votes": s["votes"],
                    "deltasDelivered": s["deltasDelivered"],
                }
                for s in snapshots
            ],
            "connections": {**connections, "total": sum(connections.values())},
            # every instance receives every delta: the log's count is the largest one
            "deltasPublished": max((s["deltasPublished"] for s in snapshots), default=0),
            "deltasDelivered": sum(s["deltasDelivered"] for s in snapshots),
            "votes": sum(s["votes"] for s in snapshots),
            "cacheHits": sum(s["cacheHits"] for s in snapshots),
            "cacheMisses": sum(s["cacheMisses"] for s in snapshots),
            "fanoutLag": {
                "p50Ms": None if p50 is None else round(p50 * 1000, 1),
                "p99Ms": None if p99 is None else round(p99 * 1000, 1),
                "samples": samples,
                "windowSeconds": self.window,
            },
            "dbPool": {
                key: sum(s["dbPool"][key] for s in snapshots) for key in ("inUse", "size", "max")
            },
            "scoreWorker": {
                "queueDepth": max(depths, default=None),
                "lagSeconds": None if not lags else round(max(lags), 3),
            },
        }

    def _lag(
        self, merged: dict[float, float], now: float
    ) -> tuple[float | None, float | None, int]:
        """p50, p99 and sample count of the fan-out lag over the window."""
        history = self._history
        if history and any(merged.get(b, 0.0) < c for b, c in history[-1][1].items()):
            history.clear()  # an instance left or restarted: its counts vanished
        history.append((now, merged))
        while len(history) > 1 and history[1][0] <= now - self.window:
            history.popleft()
        base = history[0][1] if len(history) > 1 else {}
        window = sorted((b, c - base.get(b, 0.0)) for b, c in merged.items())
        samples = int(window[-1][1]) if window else 0
        return histogram_quantile(0.5, window), histogram_quantile(0.99, window), samples
