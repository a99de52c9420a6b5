"""``realtube-push dev`` from a clean checkout: embedded PostgreSQL and Redis, nothing to set up."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import ids
from tests.support.servers import REPO, free_port

READY_WITHIN_SECONDS = 15


class Dev:
    """One ``python -m realtube_push dev`` process, its output going to a file."""

    def __init__(self, data_dir: Path, port: int, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "realtube_push", "dev", "--data-dir", str(data_dir),
                 "--port", str(port)],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> float:
        """Seconds until /health/ready answered healthy; fails after the contract's 15 s."""
        start = time.monotonic()
        while time.monotonic() - start < READY_WITHIN_SECONDS:
            assert self.process.poll() is None, f"dev exited early:\n{self.output()}"
            try:
                r = httpx.get(f"{self.url}/health/ready", timeout=2)
                if r.status_code == 200 and r.json()["status"] == "healthy":
                    return time.monotonic() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"not ready within {READY_WITHIN_SECONDS}s:\n{self.output()}")

    def stop(self) -> int:
        """SIGTERM, then the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def dev(tmp_path):
    """Starts ``dev`` processes on one data directory; kills any left running."""
    started: list[Dev] = []
    port = free_port()

    def start() -> Dev:
        process = Dev(tmp_path / "data", port, tmp_path / f"dev-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def test_dev_starts_healthy_and_says_where_things_are(dev):
    first = dev()

    first.wait_ready()

    output = first.output()
    assert re.search(rf"API:\s+{re.escape(first.url)}/api/", output), output
    assert re.search(rf"dashboard:\s+{re.escape(first.url)}/admin/", output), output
    assert first.stop() == 0


def test_dev_keeps_votes_across_a_restart_on_the_same_data_dir(dev):
    first = dev()
    first.wait_ready()
    video = ids.video_id()
    r = httpx.post(
        f"{first.url}/api/votes",
        json={"videoId": video, "category": "fully_ai", "userId": ids.user_id()},
    )
    assert r.status_code == 200
    assert first.stop() == 0

    second = dev()
    second.wait_ready()

    r = httpx.get(f"{second.url}/api/videos", params={"videoId": video})
    assert r.status_code == 200
    assert r.json()["totalVotes"] == 1
    assert second.stop() == 0
