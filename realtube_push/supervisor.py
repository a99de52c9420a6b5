"""Several server processes behind one listening socket (``WEB_CONCURRENCY``).

Python runs one core per process; an instance with two cores serves twice the requests with
two processes. The supervisor binds the port once and hands the socket to each child (the
kernel spreads connections over them). Every child is a full instance of its own (its own
hub, bus subscriber and instance id), which the live channel already handles, since several
instances are the normal case. Only the first child runs the background workers: one
worker per instance is enough and the periodic jobs need not run N times.

Signals: SIGTERM/SIGINT are forwarded to every child; the supervisor exits when they have
all exited, with the worst exit code, so a graceful shutdown stays graceful.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

from realtube_push.config import Settings


def listening_socket(host: str, port: int) -> socket.socket:
    """The shared listening socket (inheritable, large backlog for bursts of connects)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=2048)
    sock.set_inheritable(True)
    return sock


def run_children(
    settings: Settings, count: int, sock: socket.socket, *, banner: str | None = None
) -> int:
    """Start ``count`` ``serve`` children on the listening ``sock``; returns the worst exit
    code. The children hold the socket from then on: the listener goes with the last of them."""
    sock.set_inheritable(True)
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "IP_HASH_SALT": settings.ip_hash_salt.get_secret_value(),
        "EXPORT_DIR": str(settings.export_dir),
        "WEB_CONCURRENCY": "1",
    }
    if settings.admin_token is not None:
        env["ADMIN_TOKEN"] = settings.admin_token.get_secret_value()
    children: list[subprocess.Popen[bytes]] = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "realtube_push",
                "serve",
                "--no-migrate",
                "--listen-fd",
                str(sock.fileno()),
            ],
            env={
                **env,
                "INSTANCE_ID": f"{settings.instance_id}-{index}",
                "RUN_WORKERS": str(settings.run_workers and index == 0).lower(),
            },
            pass_fds=(sock.fileno(),),
        )
        for index in range(count)
    ]
    sock.close()

    def forward(signum: int, _: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    if banner:
        print(banner, flush=True)
    while any(child.poll() is None for child in children):
        # one child dying is an instance failure: stop the rest so the orchestrator restarts
        if any(child.returncode not in (None, 0) for child in children):
            forward(signal.SIGTERM, None)
        time.sleep(0.2)
    return max(abs(int(child.returncode or 0)) for child in children)
