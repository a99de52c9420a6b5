"""``realtube-push dev`` from a clean checkout, as a new user meets it: embedded PostgreSQL and
Redis, nothing to set up, clear output, and nothing left running once it exits."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from tests.support import ids
from tests.support.servers import REPO

# A deadline, not a speed claim (a loaded machine may take long to initdb): how fast a new
# user's first start is, is measured by bench/dev_start.py.
STARTED_WITHIN_SECONDS = 60
BANNER_FIRST_LINE = "RealTube push is running"


def _clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return {**env, **overrides}


def realtube(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """Run one ``realtube-push`` command to completion (no DATABASE_URL/REDIS_URL set)."""
    return subprocess.run(
        [sys.executable, "-m", "realtube_push", *args],
        cwd=REPO, env=_clean_env(**env), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


class Dev:
    """One ``python -m realtube_push dev`` process, its output going to a file (through a
    pseudo-terminal when ``terminal``, as in a user's shell). It listens on a port the
    kernel picks (``--port 0``), which its banner names."""

    def __init__(self, data_dir: Path, log: Path, *, terminal: bool = False, **env: str) -> None:
        self.data_dir = data_dir
        self.log = log
        self._url: str | None = None
        command = [sys.executable, "-m", "realtube_push", "dev", "--data-dir", str(data_dir),
                   "--port", "0"]  # fmt: skip
        self._copier: threading.Thread | None = None
        if terminal:
            parent, child = pty.openpty()
            self.process = subprocess.Popen(
                command, cwd=REPO, env=_clean_env(**env), stdout=child, stderr=child
            )
            os.close(child)
            self._copier = threading.Thread(target=self._copy, args=(parent,), daemon=True)
            self._copier.start()
        else:
            with log.open("wb") as out:
                self.process = subprocess.Popen(
                    command, cwd=REPO, env=_clean_env(**env), stdout=out, stderr=subprocess.STDOUT
                )

    def _copy(self, parent: int) -> None:
        with self.log.open("wb") as out:
            while True:
                try:
                    chunk = os.read(parent, 65536)
                except OSError:  # the terminal's other end closed: the process is gone
                    break
                if not chunk:
                    break
                out.write(chunk)
                out.flush()
        os.close(parent)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def url(self) -> str:
        """The base URL the banner printed (waiting for the banner)."""
        if self._url is None:
            self._url = self.wait_output(r"API:\s+(http://[^/\s]+)/api/").group(1)
        return self._url

    def wait_ready(self, within: float = STARTED_WITHIN_SECONDS) -> float:
        """Seconds until /health/ready answered healthy; fails after ``within``."""
        start = time.monotonic()
        self.wait_output(r"^RealTube push is running", within=within)
        while time.monotonic() - start < within:
            assert self.process.poll() is None, f"dev exited early:\n{self.output()}"
            try:
                r = httpx.get(f"{self.url}/health/ready", timeout=2)
                if r.status_code == 200 and r.json()["status"] == "healthy":
                    return time.monotonic() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"not ready within {within}s:\n{self.output()}")

    def wait_output(self, pattern: str, within: float = STARTED_WITHIN_SECONDS) -> re.Match[str]:
        """The first match of ``pattern`` in the output, waiting for it to be printed."""
        deadline = time.monotonic() + within
        while (found := re.search(pattern, self.output(), re.M)) is None:
            assert time.monotonic() < deadline, f"no {pattern!r} in:\n{self.output()}"
            assert self.process.poll() is None, f"dev exited early:\n{self.output()}"
            time.sleep(0.05)
        return found

    def stop(self) -> int:
        """SIGTERM, then the exit code (with all output copied)."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        if self._copier is not None:
            self._copier.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def processes_under(directory: Path) -> list[psutil.Process]:
    """Running processes whose command line names ``directory`` (its PostgreSQL, Redis)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if f"{directory}{os.sep}" in " ".join(process.info["cmdline"] or []):
                found.append(process)
    return found


@pytest.fixture
def data_dir():
    """A data directory outside pytest's tmp_path: pgserver runs PostgreSQL as its own user
    when the tests run as root, and a concurrent pytest session makes its basetemp private
    again (0700), locking that user out."""
    with tempfile.TemporaryDirectory(prefix="rt-dev-") as tmp:
        yield Path(tmp) / "data"


@pytest.fixture
def dev(tmp_path, data_dir):
    """Starts ``dev`` processes on one data directory; at the end kills any left running and
    whatever still runs under the directory."""
    started: list[Dev] = []

    def start(*, terminal: bool = False, **env: str) -> Dev:
        log = tmp_path / f"dev-{len(started)}.log"
        process = Dev(data_dir, log, terminal=terminal, **env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
    for leftover in processes_under(data_dir):
        with contextlib.suppress(psutil.Error):
            leftover.kill()


def banner_and_rest(output: str) -> tuple[list[str], list[str]]:
    """The banner's lines (its first line and the indented ones after it) and all others."""
    banner, rest, in_banner = [], [], False
    for line in output.splitlines():
        if line.startswith(BANNER_FIRST_LINE):
            in_banner = True
        elif in_banner and not line.startswith("  "):
            in_banner = False
        (banner if in_banner else rest).append(line)
    return banner, rest


def test_dev_starts_healthy_and_says_where_things_are(dev):
    first = dev()

    first.wait_ready()

    output = first.output()
    assert re.search(rf"API:\s+{re.escape(first.url)}/api/", output), output
    assert re.search(rf"dashboard:\s+{re.escape(first.url)}/admin/", output), output
    assert re.search(r"admin token:\s+\S+", output), output
    assert re.search(r"^\s+export DATABASE_URL='postgresql://\S+'$", output, re.M), output
    assert re.search(r"^\s+export REDIS_URL='unix://\S+'$", output, re.M), output
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


def test_dev_output_to_a_pipe_is_its_banner_then_json_lines_with_no_warnings(dev):
    run = dev()
    run.wait_ready()
    assert run.stop() == 0

    banner, rest = banner_and_rest(run.output())
    assert banner, run.output()
    assert not [line for line in rest + banner if "Warning" in line or "warn(" in line]
    log_lines = [line for line in rest if line.startswith("{")]
    plain = [line for line in rest if not line.startswith("{")]
    assert all(line.startswith(("using the embedded", "migrations applied")) for line in plain), (
        plain
    )
    events = [json.loads(line)["event"] for line in log_lines]
    assert events.count("listening") == 1
    assert "Running on" not in run.output()


@pytest.mark.parametrize(
    ("env", "json_lines"),
    [({}, False), ({"LOG_FORMAT": "json"}, True)],
    ids=["terminal-default", "LOG_FORMAT-json"],
)
def test_dev_in_a_terminal_logs_readable_lines_unless_log_format_says_json(dev, env, json_lines):
    run = dev(terminal=True, **env)
    run.wait_ready()
    assert run.stop() == 0

    _, rest = banner_and_rest(re.sub(r"\x1b\[[0-9;]*m", "", run.output()))  # no colours
    listening = [line for line in rest if "listening" in line]
    assert len(listening) == 1, run.output()
    assert listening[0].startswith("{") is json_lines
    if not json_lines:
        assert f"listen={run.url}" in listening[0]


def test_dev_on_a_taken_port_says_so_in_one_line_and_starts_nothing(data_dir):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]

        result = realtube("dev", "--data-dir", str(data_dir), "--port", str(port), timeout=30)

    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr == f"realtube-push: port {port} is in use; pass --port N\n"
    assert not (data_dir / "pg").exists()
    assert processes_under(data_dir) == []


def test_dev_stops_its_postgresql_and_redis_on_exit_even_after_an_earlier_kill_9(dev):
    crashed = dev()
    crashed.wait_ready()
    crashed.kill()  # SIGKILL: no cleanup of any kind
    assert processes_under(crashed.data_dir), "PostgreSQL and Redis outlive a SIGKILL"

    again = dev()
    again.wait_ready()
    assert again.stop() == 0

    deadline = time.monotonic() + 15
    while left := processes_under(again.data_dir):
        assert time.monotonic() < deadline, [p.info["cmdline"] for p in left]
        time.sleep(0.1)


def test_dev_restarts_its_embedded_redis_when_it_dies_and_says_so(dev):
    run = dev()
    run.wait_ready()
    redis_url = run.wait_output(r"export REDIS_URL='(\S+)'").group(1)
    with redis.Redis.from_url(redis_url) as client:
        redis_pid = int(client.info("server")["process_id"])

    os.kill(redis_pid, signal.SIGKILL)

    line = run.wait_output(r"^.*embedded_redis_restarted.*$").group(0)
    assert json.loads(line)["level"] == "warning"
    run.wait_ready()
    video = ids.video_id()
    r = httpx.post(
        f"{run.url}/api/votes",
        json={"videoId": video, "category": "fully_ai", "userId": ids.user_id()},
    )
    assert r.status_code == 200
    assert run.stop() == 0


def test_migrate_export_and_worker_work_against_the_stack_dev_runs(dev):
    run = dev()
    run.wait_ready()
    data_dir = str(run.data_dir)
    r = httpx.post(
        f"{run.url}/api/votes",
        json={"videoId": ids.video_id(), "category": "fully_ai", "userId": ids.user_id()},
    )
    assert r.status_code == 200

    migrated = realtube("migrate", "--data-dir", data_dir)
    exported = realtube("export", "--data-dir", data_dir)
    url = run.wait_output(r"export DATABASE_URL='(\S+)'").group(1)
    by_url = realtube("migrate", DATABASE_URL=url)
    worker = subprocess.Popen(
        [sys.executable, "-m", "realtube_push", "worker", "--data-dir", data_dir],
        cwd=REPO, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert worker.stdout is not None
        for line in worker.stdout:  # the workers' first pass logs this
            if "trust_refreshed" in line:
                break
    finally:
        worker.send_signal(signal.SIGTERM)
        worker_code = worker.wait(timeout=60)

    assert migrated.returncode == 0, migrated.stderr
    assert "migrations applied: none pending" in migrated.stdout
    assert exported.returncode == 0, exported.stderr
    assert "export written" in exported.stdout
    assert by_url.returncode == 0, by_url.stderr
    assert worker_code == 0
    # dev still serves, and serves the export written beside it
    assert httpx.get(f"{run.url}/health/ready").json()["status"] == "healthy"
    assert httpx.get(f"{run.url}/api/database/export", follow_redirects=True).status_code == 200
    assert run.stop() == 0
    assert processes_under(run.data_dir) == []
