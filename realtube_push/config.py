"""Settings, read once from the environment and validated before anything starts.

Every knob an operator may turn lives here, named as its environment variable
(``DATABASE_URL``, ``REDIS_URL``, ``PORT``, ...). ``docs/operations.md`` lists them all.
"""

from __future__ import annotations

import ipaddress
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]

# live handshakes one process admits per second, and at once, before it sheds: about 0.4 of
# a core at the cost measured here (~1.6 ms each: docs/benchmarks.md, "Admission"), so a
# herd leaves the process time to deliver to the clients it holds
ACCEPT_RATE = 250.0
ACCEPT_BURST = 500


class Settings(BaseSettings):
    """The service's configuration. Unknown environment variables are ignored."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: str | None = None
    redis_url: str | None = None
    # Prefix for every Redis key and channel; empty uses cache.py's key names as they are.
    redis_namespace: str = ""
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # JSON lines, or human-readable ones; auto = human-readable when stdout is a terminal
    log_format: Literal["auto", "json", "console"] = "auto"
    environment: Literal["development", "test", "production"] = "development"
    # server processes per instance (one core each); see supervisor.py
    web_concurrency: int = Field(1, ge=1, le=64)
    instance_id: str = Field(default_factory=lambda: secrets.token_hex(4))

    cors_origins: CommaList = ["chrome-extension://*", "moz-extension://*"]
    admin_token: SecretStr | None = None
    ip_hash_salt: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_hex(16)))
    # Forwarded client addresses are believed only from these peers (CIDRs).
    trusted_proxies: CommaList = []
    max_body_bytes: int = Field(16_384, ge=256)

    rate_limits_enabled: bool = True
    rate_limit_videos: int = Field(100, ge=1)
    rate_limit_votes: int = Field(10, ge=1)
    rate_limit_votes_delete: int = Field(5, ge=1)
    rate_limit_sync: int = Field(2, ge=1)
    # every sync request of one address, whatever X-User-ID it sends (NAT: several users)
    rate_limit_sync_per_ip: int = Field(20, ge=1)
    rate_limit_stats: int = Field(10, ge=1)
    rate_limit_export: int = Field(1, ge=1)

    db_pool_min: int = Field(2, ge=1)
    db_pool_max: int = Field(10, ge=1)

    # Votes arriving within this many ms are committed together (0: one transaction each),
    # at most vote_batch_max to a transaction, vote_batch_concurrency transactions at a time.
    vote_batch_ms: int = Field(5, ge=0, le=1000)
    vote_batch_max: int = Field(200, ge=1, le=5000)
    vote_batch_concurrency: int = Field(2, ge=1)

    run_workers: bool = True
    score_debounce_ms: int = Field(100, ge=0)
    score_poll_seconds: float = Field(1.0, gt=0)
    score_batch_size: int = Field(500, ge=1)
    full_confidence_weight: float = Field(3.0, gt=0)
    channel_debounce_seconds: float = Field(2.0, ge=0)
    channel_interval_seconds: float = Field(900.0, gt=0)
    trust_interval_seconds: float = Field(3600.0, gt=0)
    prune_interval_seconds: float = Field(600.0, gt=0)
    sync_retention_hours: float = Field(48.0, gt=0)
    full_blob_interval_seconds: float = Field(60.0, gt=0)
    # how often a process serving /api/sync/full looks whether the stored blob changed
    full_blob_check_seconds: float = Field(1.0, gt=0)

    live_heartbeat_seconds: float = Field(20.0, gt=0)
    live_idle_timeout_seconds: float = Field(60.0, gt=0)
    live_hello_timeout_seconds: float = Field(10.0, gt=0)
    live_max_message_bytes: int = Field(4096, ge=256)
    # live connections of one client address across every process sharing the Redis
    live_max_connections_per_ip: int = Field(50, ge=1)
    # a process that stops renewing its per-address slots (it died) loses them after this
    live_slot_ttl_seconds: float = Field(30.0, gt=0)
    # load shedding per process: new live connections per second (token bucket; 0 = no
    # limit) and at once, connections held; past them handshakes get 503 OVERLOADED
    live_accept_rate: float = Field(ACCEPT_RATE, ge=0)
    live_accept_burst: int = Field(ACCEPT_BURST, ge=1)
    live_max_connections: int = Field(20_000, ge=1)
    # and while the connected clients' deltas wait longer than this for the fan-out (a herd
    # being admitted holds the process); 0 = never shed for it
    live_shed_lag_ms: int = Field(1000, ge=0)
    # the longest Retry-After a shed client is given (waits are spread from 1 s up to it)
    live_shed_max_retry_seconds: int = Field(60, ge=2)
    live_max_queued_frames: int = Field(16, ge=1)
    live_max_pending_deltas: int = Field(5000, ge=10)
    live_replay_max: int = Field(50_000, ge=100)
    live_tail_check_seconds: float = Field(1.0, gt=0)
    live_send_timeout_seconds: float = Field(15.0, gt=0)
    # herds: clients sent away together (shutdown: reconnect; epoch change: resync) are
    # told to wait a delay drawn over connections / RATE seconds (push/herd.py): at least
    # LIVE_RECONNECT_DELAY_MS for a reconnect, at most the MAX_WINDOW
    live_reconnect_delay_ms: int = Field(1000, ge=0)
    live_reconnect_rate: float = Field(500.0, gt=0)
    live_reconnect_max_window_ms: int = Field(30_000, ge=0)
    live_resync_rate: float = Field(500.0, gt=0)
    live_resync_max_window_ms: int = Field(30_000, ge=0)
    live_empty_flush_seconds: float = Field(1.0, gt=0)
    # fan-out pacing: after a pass over the sessions, wait factor x its duration (at most
    # max_pause) so what arrives meanwhile leaves as one frame: lower = less latency, more CPU
    live_fanout_pause_factor: float = Field(2.0, ge=0)
    live_fanout_max_pause_ms: int = Field(150, ge=0)
    # WebSocket frames written straight to the socket (push/direct.py); false = through ASGI
    live_direct_writes: bool = True

    # The migration .sql files; unset means the source tree's migrations/ (dev, tests). An
    # installed package (the container image) has no source tree, so it must say where they are.
    migrations_dir: Path | None = None
    # directory holding clients/js and static_admin (default: the source tree)
    static_root: Path | None = None

    # Public database export (`realtube-push export`, GET /api/database/export).
    export_dir: Path = Path(".realtube/exports")
    export_keep: int = Field(7, ge=1)
    # pg_dump to run; unset means pgserver's bundled one (PostgreSQL 16), else pg_dump on PATH.
    pg_dump_path: str | None = None

    video_cache_ttl: int = Field(300, ge=1)
    channel_cache_ttl: int = Field(900, ge=1)
    shutdown_grace_seconds: float = Field(30.0, ge=0)

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Settings:
        if self.environment == "production" and "IP_HASH_SALT" not in _env_keys():
            raise ValueError("IP_HASH_SALT must be set in production (IP hashes must be stable)")
        if self.db_pool_max < self.db_pool_min:
            raise ValueError("DB_POOL_MAX must be >= DB_POOL_MIN")
        if self.vote_batch_concurrency > self.db_pool_max:
            raise ValueError("VOTE_BATCH_CONCURRENCY must be <= DB_POOL_MAX")
        return self

    @cached_property
    def proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """Trusted proxies as parsed networks."""
        return tuple(ipaddress.ip_network(item, strict=False) for item in self.trusted_proxies)


def _env_keys() -> set[str]:
    import os

    return {key.upper() for key in os.environ}
