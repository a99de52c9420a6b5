"""A network that blocks the live channel: nginx in front of the API dropping WebSocket
upgrades and/or SSE requests, as a restrictive company proxy does.

Playwright's request interception does not see a service worker's WebSockets, so the tests
block them where users meet such blocks: on the way. nginx answers a blocked path with its
code 444 (close the connection without a response): the browser sees a failed WebSocket, or
a failed ``fetch`` for SSE. Everything else is proxied unchanged.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.nginx import nginx_binary
from tests.support.servers import free_port

CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
  server {{
    listen 127.0.0.1:{port};
{blocks}
    location / {{
      proxy_pass http://{upstream};
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_buffering off;
      proxy_read_timeout 1h;
    }}
  }}
}}
"""

PATHS = {"ws": "/api/live/ws", "sse": "/api/live/sse"}


@dataclass
class Proxy:
    """The running proxy; ``url`` is what the extension is pointed at."""

    url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def blocking_proxy(upstream_url: str, *, block: tuple[str, ...]) -> Iterator[Proxy]:
    """nginx on a free loopback port proxying to ``upstream_url``, dropping the live
    transports named in ``block`` (``"ws"``, ``"sse"``)."""
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is missing (apt-get install nginx)")
    port = free_port()
    blocks = "\n".join(f"    location = {PATHS[kind]} {{ return 444; }}" for kind in block)
    with tempfile.TemporaryDirectory(prefix="rt-proxy-") as tmp:
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(
            CONFIG.format(
                tmp=tmp,
                port=port,
                blocks=blocks,
                upstream=upstream_url.removeprefix("http://"),
            )
        )
        process = subprocess.Popen(
            [binary, "-p", tmp, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        proxy = Proxy(url=f"http://127.0.0.1:{port}", process=process)
        try:
            _wait_until_up(proxy, Path(tmp) / "error.log")
            yield proxy
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(proxy: Proxy, error_log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proxy.process.poll() is not None:
            log = error_log.read_text() if error_log.exists() else ""
            raise RuntimeError(f"nginx exited with {proxy.process.returncode}: {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{proxy.url}/health/live", timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError("the blocking proxy did not come up")
