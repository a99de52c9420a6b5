"""Prometheus metrics and the liveness facts ``/health/ready`` reports.

Log lines are configured in ``realtube_push.logs``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
)

_log = structlog.get_logger("realtube.redis")


@dataclass
class Metrics:
    """The service's Prometheus metrics, in a registry of their own."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    instance: str = ""  # this process's instance id (each WEB_CONCURRENCY process has its own)

    def __post_init__(self) -> None:
        r = self.registry
        # process_cpu_seconds_total, process_resident_memory_bytes, open fds (from /proc)
        ProcessCollector(registry=r)
        # which process answered: with WEB_CONCURRENCY > 1 a scrape reaches one of several
        Info("realtube_instance", "This process's instance id", registry=r).info(
            {"instance": self.instance}
        )
        self.requests = Counter(
            "realtube_http_requests_total",
            "HTTP requests",
            ["method", "endpoint", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "realtube_http_request_duration_seconds",
            "HTTP request latency",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.votes = Counter("realtube_votes_total", "Votes received", ["applied"], registry=r)
        self.vote_batch_size = Histogram(
            "realtube_vote_batch_size",
            "Votes committed per batch transaction (VOTE_BATCH_MS > 0)",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.vote_batches_retried = Counter(
            "realtube_vote_batches_retried_total",
            "Vote batches that failed and were retried vote by vote",
            registry=r,
        )
        self.cache = Counter(
            "realtube_cache_requests_total", "Redis cache lookups", ["result"], registry=r
        )
        self.score_queue_depth = Gauge(
            "realtube_score_queue_depth", "Videos waiting for recalculation", registry=r
        )
        self.score_lag = Gauge(
            "realtube_score_worker_lag_seconds", "Age of the oldest queued video", registry=r
        )
        self.dependency_up = Gauge(
            "realtube_dependency_up",
            "1 while a dependency answered this instance's last check, else 0",
            ["dependency"],
            registry=r,
        )
        self.db_pool = Gauge(
            "realtube_db_pool_connections", "Database pool connections", ["state"], registry=r
        )
        self.score_batches = Counter(
            "realtube_score_batches_total", "Score recalculation batches", registry=r
        )
        self.scores_recalculated = Counter(
            "realtube_scores_recalculated_total", "Videos recalculated", registry=r
        )
        self.live_connections = Gauge(
            "realtube_live_connections", "Live connections", ["transport"], registry=r
        )
        self.live_ws_sessions = Counter(
            "realtube_live_ws_sessions_total",
            "WebSocket sessions started, by how their frames are written: direct (straight to"
            " the socket) or asgi (each through the server's ASGI send)",
            ["write_mode"],
            registry=r,
        )
        for mode in ("direct", "asgi"):  # both exported from the start, at 0
            self.live_ws_sessions.labels(mode)
        self.live_published = Counter(
            "realtube_live_deltas_published_total", "Deltas received from the bus", registry=r
        )
        self.live_delivered = Counter(
            "realtube_live_deltas_delivered_total", "Deltas written to live clients", registry=r
        )
        self.live_frames = Counter(
            "realtube_live_frames_sent_total", "Delta frames written to live clients", registry=r
        )
        self.live_fanout_cpu = Counter(
            "realtube_live_fanout_cpu_seconds_total",
            "CPU time of this process's fan-out passes (offers, encodings and socket writes)",
            registry=r,
        )
        self.live_conflated = Counter(
            "realtube_live_deltas_conflated_total",
            "Deltas superseded by a newer one while a client was busy",
            registry=r,
        )
        self.live_resyncs = Counter(
            "realtube_live_resyncs_total", "Sessions told to resync", ["reason"], registry=r
        )
        self.live_shed = Counter(
            "realtube_live_handshakes_shed_total",
            "Live handshakes refused with 503 OVERLOADED, by reason: rate (LIVE_ACCEPT_RATE),"
            " ceiling (LIVE_MAX_CONNECTIONS) or lag (LIVE_SHED_LAG_MS)",
            ["reason"],
            registry=r,
        )
        self.live_backfills = Counter(
            "realtube_live_backfills_total", "Bus gaps filled from the log", registry=r
        )
        self.live_replay_pages = Counter(
            "realtube_live_replay_pages_total",
            "Replay pages sent to resuming clients, by where their deltas came from: shared"
            " (read for another client moments before), redis (recent store), postgres",
            ["source"],
            registry=r,
        )
        self.live_replay_frames = Counter(
            "realtube_live_replay_frames_total",
            "Replay frames sent, built (filtered and encoded) or shared with another client",
            ["result"],
            registry=r,
        )
        self.live_position_reads = Counter(
            "realtube_live_position_reads_total",
            "Sync-log position reads made for live handshakes (shared by the handshakes"
            " waiting at the time)",
            registry=r,
        )
        self.full_sync_queries = Counter(
            "realtube_full_sync_queries_total",
            "Database queries made to serve GET /api/sync/full (the document is held in"
            " memory): check (has the stored blob changed?), load (its bodies), build",
            ["query"],
            registry=r,
        )
        self.redis_failures = Counter(
            "realtube_redis_failures_total",
            "Redis calls that failed while the service went on without Redis, by what they were"
            " for (invalidate, publish, cache_read, cache_fill, rate_limit, bus, ...)",
            ["operation"],
            registry=r,
        )
        self.live_fanout_lag = Histogram(
            "realtube_live_fanout_lag_seconds",
            "Time from a batch's publish to its delivery: per fan-out pass (to the pass's last"
            " socket write) for WebSocket, per frame written for SSE",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )


class RedisOutage:
    """Redis trouble in the log once per outage, not once per call.

    What goes on without Redis (a cache read that becomes a miss, a rate limit that fails
    open, a batch that subscribers backfill from the sync log) reports each failed call
    here. The first failure logs one ``redis_unavailable`` warning; the first success after
    it one ``redis_recovered`` info line with how long it lasted and how many calls failed;
    every failure counts in ``realtube_redis_failures_total{operation}``. (A warning with a
    traceback per call was 3.3 KB per vote during an outage: 11.5 MB of log a minute.)
    """

    def __init__(self, failures: Counter) -> None:
        self._failures = failures
        self._down_since: float | None = None
        self._failed_calls = 0

    @property
    def down(self) -> bool:
        """Whether the last call that reported failed."""
        return self._down_since is not None

    def failed(self, operation: str, error: Exception) -> None:
        """A call for ``operation`` failed with ``error`` and the caller went on without it."""
        self._failures.labels(operation).inc()
        self._failed_calls += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
            # the error's type only: its text names Redis's address
            _log.warning("redis_unavailable", operation=operation, error=type(error).__name__)

    def succeeded(self) -> None:
        """A call succeeded: if Redis was down, it is back."""
        if self._down_since is not None:
            _log.info(
                "redis_recovered",
                down_seconds=round(time.monotonic() - self._down_since, 1),
                failed_calls=self._failed_calls,
            )
            self._down_since, self._failed_calls = None, 0


@dataclass
class Status:
    """Liveness facts for /health/ready: when each background job last completed a run, and
    the sections that parts composed on top of the services add (``app.py`` adds ``live``)."""

    started: float = field(default_factory=time.time)
    last_runs: dict[str, float] = field(default_factory=dict)
    sections: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)
    # set once the process is shutting down: /health/ready then answers 503 "draining"
    draining: bool = False

    def mark_run(self, job: str) -> None:
        self.last_runs[job] = time.time()
