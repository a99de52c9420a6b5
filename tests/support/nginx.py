"""Real nginx for the stack tests: the shipped ``nginx/nginx.conf`` on loopback.

``render_config`` changes only the deployment values the config's header names (the
upstream servers and the two listen ports) and nothing else; ``start_nginx`` runs nginx in
the foreground with its own prefix (cache, temp files, certificates and pid in a temporary
directory), so nothing outside that directory is touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.servers import REPO, free_port

NGINX_CONF = REPO / "nginx" / "nginx.conf"
# The upstream servers as shipped (docker-compose service names), in order.
SHIPPED_UPSTREAMS = ("app1:8080", "app2:8080")


def nginx_binary() -> str | None:
    """The nginx executable (Debian installs it in /usr/sbin, often not on a user's PATH)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which("nginx", path=path)


def render_config(source: str, *, http_port: int, https_port: int, upstreams: Sequence[str]) -> str:
    """The shipped config with its listen ports and upstream servers put on loopback.

    Each replaced text must occur exactly once, so a change to the shipped config that this
    function does not know about fails loudly instead of testing something else.
    """
    replacements = {
        "listen 80 default_server;": f"listen 127.0.0.1:{http_port} default_server;",
        "listen 443 ssl default_server;": f"listen 127.0.0.1:{https_port} ssl default_server;",
    }
    for shipped, loopback in zip(SHIPPED_UPSTREAMS, upstreams, strict=True):
        replacements[f"server {shipped} "] = f"server {loopback} "
    for old, new in replacements.items():
        if source.count(old) != 1:
            raise ValueError(f"expected {old!r} exactly once in {NGINX_CONF}")
        source = source.replace(old, new)
    return source


def write_self_signed_certificate(directory: Path) -> Path:
    """``realtube.crt``/``realtube.key`` for 127.0.0.1 in ``directory``; returns the cert."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "realtube.crt", directory / "realtube.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert


@dataclass
class Nginx:
    """One running nginx (master in the foreground) serving the rendered config."""

    process: subprocess.Popen[bytes]
    prefix: Path
    http_port: int
    https_port: int
    certificate: Path
    log_path: Path

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts exactly this nginx's self-signed certificate."""
        return ssl.create_default_context(cafile=str(self.certificate))

    def client(self, *, local_address: str | None = None, **kwargs: object) -> httpx.AsyncClient:
        """An HTTPS client for this nginx, optionally from another loopback source address."""
        transport = httpx.AsyncHTTPTransport(verify=self.ssl_context(), local_address=local_address)
        return httpx.AsyncClient(base_url=self.https_url, transport=transport, **kwargs)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10) -> None:
        """Fast shutdown (SIGTERM), then remove the prefix directory."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.prefix, ignore_errors=True)


def prepare_prefix(upstreams: Sequence[str]) -> tuple[Path, Path, int, int]:
    """A prefix directory holding the rendered config and a certificate.

    Returns (prefix, config path, http port, https port). The directory is world-readable:
    started as root, nginx runs its workers as an unprivileged user, which must reach the
    cache and temp directories the master creates in it.
    """
    prefix = Path(tempfile.mkdtemp(prefix="rt-nginx-"))
    prefix.chmod(0o755)
    write_self_signed_certificate(prefix / "certs")
    http_port, https_port = free_port(), free_port()
    config = prefix / "nginx.conf"
    config.write_text(
        render_config(
            NGINX_CONF.read_text(),
            http_port=http_port,
            https_port=https_port,
            upstreams=upstreams,
        )
    )
    return prefix, config, http_port, https_port


def nginx_command(binary: str, prefix: Path, config: Path, *extra: str) -> list[str]:
    """The command line: our prefix and config, foreground, pid file in the prefix."""
    return [
        binary, "-p", f"{prefix}/", "-c", str(config),
        "-g", f"daemon off; pid {prefix}/nginx.pid;", *extra,
    ]  # fmt: skip


def start_nginx(binary: str, upstreams: Sequence[str], *, timeout: float = 20) -> Nginx:
    """Start nginx in front of ``upstreams`` (``host:port``) and wait until it proxies."""
    prefix, config, http_port, https_port = prepare_prefix(upstreams)
    log_path = prefix / "nginx.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            nginx_command(binary, prefix, config),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    nginx = Nginx(process, prefix, http_port, https_port, prefix / "certs" / "realtube.crt",
                  log_path)  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = nginx.log()
            nginx.stop()
            raise RuntimeError(f"nginx exited with {process.returncode}:\n{log}")
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.get(f"{nginx.https_url}/health/live", verify=nginx.ssl_context(), timeout=2)
            if r.status_code == 200:
                return nginx
        time.sleep(0.05)
    log = nginx.log()
    nginx.stop()
    raise RuntimeError(f"nginx not proxying after {timeout}s:\n{log}")
