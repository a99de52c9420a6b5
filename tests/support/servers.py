"""Real server processes for integration tests: ``python -m realtube_push serve`` on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
#: Tries at a free port before giving up (each loses only to another process's bind).
PORT_ATTEMPTS = 5


class PortTaken(RuntimeError):
    """The server exited at start because its port was taken meanwhile."""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One running server process."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 40) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def kill(self) -> None:
        """SIGKILL: a crash, with no graceful anything."""
        self.process.kill()
        self.process.wait()


@dataclass
class ServerFactory:
    """Starts servers sharing one database and Redis; stops whatever is left at the end."""

    database_url: str
    redis_url: str
    namespace: str = field(default_factory=lambda: f"s{os.urandom(4).hex()}")
    started: list[Server] = field(default_factory=list)

    def start(
        self,
        *,
        command: str = "serve",
        wait_ready: bool = True,
        port: int | None = None,
        **env: str,
    ) -> Server:
        """Start one process; ``env`` overrides settings (e.g. ``RATE_LIMITS_ENABLED="false"``).

        ``port`` reuses a port (a restart of a stopped server at the same address, as clients
        that remember it see it); by default a free one is picked, and picked again if another
        process took it between the pick and the server's bind (the machine is shared).
        """
        if port is not None or not wait_ready:
            return self._launch(command, wait_ready, free_port() if port is None else port, env)
        attempts_left = PORT_ATTEMPTS
        while True:
            try:
                return self._launch(command, wait_ready, free_port(), env)
            except PortTaken:
                attempts_left -= 1
                if not attempts_left:
                    raise

    def _launch(self, command: str, wait_ready: bool, port: int, env: dict[str, str]) -> Server:
        full_env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "REDIS_NAMESPACE": self.namespace,
            "PORT": str(port),
            "ENVIRONMENT": "test",
            "LOG_LEVEL": "info",
            "IP_HASH_SALT": "test-salt",
            "RATE_LIMITS_ENABLED": "false",
            "SCORE_DEBOUNCE_MS": "20",
            **env,
        }
        log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
            prefix=f"rt-{command}-{port}-", suffix=".log", delete=False
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "realtube_push", command],
            cwd=REPO,
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        server = Server(process, port, Path(log_file.name), full_env)
        self.started.append(server)
        if wait_ready:
            try:
                wait_until_ready(server)
            except PortTaken:
                self.started.remove(server)  # it never served: nothing of it to check
                raise
        return server

    def stop_all(self) -> None:
        for server in self.started:
            if server.process.poll() is None:
                with contextlib.suppress(Exception):
                    server.terminate(timeout=40)


def wait_until_ready(server: Server, timeout: float = 30) -> None:
    """Block until /health/ready answers 200, or fail with the server's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            log = server.log()
            failure = PortTaken if f"port {server.port} is in use" in log else RuntimeError
            raise failure(f"server exited with {server.process.returncode}:\n{log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/health/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server not ready after {timeout}s:\n{server.log()}")
