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
    """``realtube-push serve`` (or ``args``) with benchmark settings; waits until ready."""
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
        cwd=REPO,
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
