"""Shared bench plumbing: a stack (embedded or from DATABASE_URL/REDIS_URL), server
processes, and /proc readings (RSS, CPU seconds) of a process."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Stack:
    database_url: str
    redis_url: str


@contextlib.contextmanager
def stack() -> Iterator[Stack]:
    """PostgreSQL + Redis: the environment's, or embedded ones in a temp dir, migrated."""
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        yield Stack(os.environ["DATABASE_URL"], os.environ["REDIS_URL"])
        return
    from realtube_push.devstack import embedded_stack

    with tempfile.TemporaryDirectory(prefix="rt-bench-") as tmp, embedded_stack(Path(tmp)) as s:
        yield Stack(s.database_url, s.redis_url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_server(st: Stack, *, args: list[str] | None = None, **env: str) -> ServerProcess:
    """``realtube-push serve`` (or ``args``) with benchmark settings; waits until ready.
    ``BENCH_SERVER_TREE`` (a checkout of another commit) runs that commit's server instead:
    a baseline in the same run."""
    port = free_port()
    full_env = {
        **os.environ,
        "DATABASE_URL": st.database_url,
        "REDIS_URL": st.redis_url,
        "PORT": str(port),
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "warning",
        "IP_HASH_SALT": "bench",
        "RATE_LIMITS_ENABLED": "false",
        **env,
    }
    log = tempfile.NamedTemporaryFile(prefix="rt-bench-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        args or [sys.executable, "-m", "realtube_push", "serve"],
        cwd=os.environ.get("BENCH_SERVER_TREE", REPO),
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=raise_fd_limit,  # the server holds thousands of sockets
    )
    server = ServerProcess(process, port, Path(log.name))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(Path(log.name).read_text())
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/health/live", timeout=2).status_code == 200:
                return server
        time.sleep(0.1)
    raise RuntimeError("server did not start")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (a server with ``WEB_CONCURRENCY`` > 1 is a supervisor and
    its workers)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return [pid, *children]


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` and its children, in KiB."""
    total = 0
    for member in process_tree(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its children so far."""
    ticks = 0
    for member in process_tree(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of ``values`` (inclusive method)."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to ``pid`` and its children at once (a crash: nobody is told)."""
    for member in reversed(process_tree(pid)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, sig)


class PeakRss:
    """The largest RSS (KiB) of a process tree, sampled every ``interval`` s by a thread
    (the sampling must go on while the event loop under test is busy)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        import threading

        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                self.peak = max(self.peak, rss_kib(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def scrape_metrics(url: str) -> dict[str, float]:
    """The server's ``/metrics``: every sample, keyed by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=30).text
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def counter_deltas(before: dict[str, float], after: dict[str, float], pattern: str) -> dict:
    """Counters (``*_total``) matching ``pattern`` that changed between two scrapes."""
    import re

    wanted = re.compile(pattern)
    return {
        name: round(value - before.get(name, 0.0), 3)
        for name, value in after.items()
        if "_total" in name and wanted.search(name) and value != before.get(name, 0.0)
    }


PG_ACTIVITY = """
SELECT (SELECT xact_commit + xact_rollback FROM pg_stat_database
          WHERE datname = current_database()) AS transactions,
       (SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) FROM pg_stat_user_tables
          WHERE relname = 'sync_cache') AS log_reads,
       (SELECT coalesce(sum(calls), 0) FROM pg_stat_statements
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()))
          AS statements
"""
PG_ACTIVITY_NO_PGSS = PG_ACTIVITY.replace(
    "(SELECT coalesce(sum(calls), 0) FROM pg_stat_statements\n"
    "          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()))",
    "NULL",
)


async def pg_activity(database_url: str) -> dict[str, float]:
    """Cumulative PostgreSQL activity of the database: transactions (each statement outside
    a transaction is one), statements when ``pg_stat_statements`` is loaded (else None), and
    reads of the sync log (scans of ``sync_cache``). Backends report within ~1 s of going
    idle: read after a pause of that length."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        has_pgss = await conn.fetchval(
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"
        )
        row = await conn.fetchrow(PG_ACTIVITY if has_pgss else PG_ACTIVITY_NO_PGSS)
        return {k: (float(v) if v is not None else float("nan")) for k, v in row.items()}
    finally:
        await conn.close()


def server_trees(baseline: str | None) -> dict[str, str | None]:
    """The servers to measure run for run: this checkout's, and ``baseline``'s if given
    (an earlier commit unpacked in a directory, e.g. with ``git archive``)."""
    return {"current": None} | ({"baseline": baseline} if baseline else {})


@contextlib.contextmanager
def server_tree(tree: str | None) -> Iterator[None]:
    """``start_server`` runs the server of ``tree`` (None: this checkout) meanwhile."""
    before = os.environ.pop("BENCH_SERVER_TREE", None)
    if tree:
        os.environ["BENCH_SERVER_TREE"] = tree
    try:
        yield
    finally:
        os.environ.pop("BENCH_SERVER_TREE", None)
        if before is not None:
            os.environ["BENCH_SERVER_TREE"] = before
