"""The production shape on loopback: the shipped nginx config in front of two app instances.

Measures, through nginx only (HTTPS):

- hash-prefix lookups/s with wrk: the proxy cache warm (a set of prefixes nginx already
  holds: HITs) against lookups nginx cannot answer from its cache. The config has no cache
  bypass switch, so "bypassed" is measured two ways: distinct prefixes never asked before
  (nginx MISS and the app's own Redis cache miss: PostgreSQL answers), and the warm set with
  a unique query string per request (nginx MISS: the cache key holds the URI; the app's
  Redis cache is warm). nginx's own hit ratio per run is read from its access log.
- live WebSocket clients held by the two instances: N clients connect through nginx, each
  TLS, from 20 per loopback address (the shipped per-address limits stay as they are);
  connect time, per-instance connection counts (``/health/ready``), RSS of the instances and
  of nginx's workers, then votes through nginx: whether each reaches all N clients, and the
  vote -> delivered latency p50/p99 over every (client, vote) pair.

    python -m bench.nginx_stack --connections 2000 4000 --seconds 10

wrk comes from one address, which nginx's per-address `api` zone (100 r/min, burst 20)
would refuse almost entirely: the REST runs use the shipped config with its `limit_req`
lines removed (printed as `rest_nginx_rate_limits`); the live runs use the shipped config
unchanged (ports and upstream hosts substituted, as the stack tests do).
The app's own rate limits are off, as in every bench. Figures print as ``name: value``.
Uses DATABASE_URL/REDIS_URL when set, else an embedded stack in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `python bench/nginx_stack.py` as well as `-m`

from bench.harness import (  # noqa: E402
    Stack,
    raise_fd_limit,
    rss_kib,
    stack,
    start_server,
)
from bench.live_load import hist_percentile, latencies  # noqa: E402
from bench.rest_load import lua_paths, seed, wrk  # noqa: E402
from bench.wsclient import FrameLog, Subscriber  # noqa: E402
from tests.support.nginx import Nginx, nginx_binary, nginx_command, prepare_prefix  # noqa: E402

# Removed for the REST runs only (see the module docstring): even at a huge rate, a
# `burst` counts requests within one millisecond, which wrk's 64 connections exceed.
LIMIT_REQ = re.compile(r"^\s*limit_req zone=\w+ burst=\d+ nodelay;\n", re.M)
PER_ADDRESS = 20  # live clients per source address: within the `api` zone's burst of 20
INSTANCE_ENV = {
    "TRUSTED_PROXIES": "127.0.0.1/32",  # nginx, as in production
    "DB_POOL_MAX": "20",
    # bench clients never answer pings; the default idle timeout (60 s) would close them
    "LIVE_IDLE_TIMEOUT_SECONDS": "3600",
    # thousands of clients connecting at once are this bench's setup, not what it measures
    # (admission is bench/admission.py's): no shedding
    "LIVE_ACCEPT_RATE": "0",
}

DISTINCT_LUA = r"""
-- every request a 4-hex prefix no earlier request of this run asked for: thread i walks
-- its own stretch of the 65,536 prefixes, after the warm set (0000-00ff)
local next_id = 1
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end
function init(args)
  n = 0
  base = 256 + (id - 1) * 32640
end
function request()
  local prefix = string.format("%04x", (base + n) % 65536)
  n = n + 1
  return wrk.format("GET", "/api/videos/" .. prefix)
end
"""


def unique_query_lua(paths: list[str]) -> str:
    """The warm paths, each request with a query string of its own (a new cache key)."""
    items = ",".join(f'"{p}"' for p in paths)
    return (
        f"local paths = {{{items}}}\nlocal next_id = 1\n"
        "function setup(thread) thread:set('id', next_id); next_id = next_id + 1 end\n"
        "function init(args) n = 0 end\n"
        "function request()\n  n = n + 1\n"
        "  return wrk.format('GET', paths[n % #paths + 1] .. '?u=' .. id .. '-' .. n)\nend\n"
    )


# --------------------------------------------------------------------------- nginx


def start_nginx(upstreams: Sequence[str], *, unlimited: bool, timeout: float = 20) -> Nginx:
    """The shipped config rendered for loopback (for wrk: without its `limit_req`s)."""
    binary = nginx_binary()
    if binary is None:
        raise SystemExit("nginx is needed: apt-get install nginx")
    prefix, config, http_port, https_port = prepare_prefix(upstreams)
    if unlimited:
        text, removed = LIMIT_REQ.subn("", config.read_text())
        assert removed >= 8, removed
        config.write_text(text)
    log_path = prefix / "nginx.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            nginx_command(binary, prefix, config), stdout=log_file, stderr=subprocess.STDOUT
        )
    nginx = Nginx(
        process, prefix, http_port, https_port, prefix / "certs" / "realtube.crt", log_path
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(nginx.log())
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.get(f"{nginx.https_url}/health/live", verify=nginx.ssl_context(), timeout=2)
            if r.status_code == 200:
                return nginx
        time.sleep(0.05)
    nginx.stop()
    raise RuntimeError("nginx did not start")


NGINX_PROBLEM = re.compile(r"\[(alert|crit|error|emerg)\] \d+#\d+: (?:\*\d+ )?([^,(]*)")


def nginx_problems(nginx: Nginx) -> list[tuple[str, int]]:
    """nginx's error-log messages of level error and above, counted (variable parts cut)."""
    found = Counter(f"[{m[0]}] {m[1].strip()}" for m in NGINX_PROBLEM.findall(nginx.log()))
    return found.most_common(4)


def nginx_workers_rss_kib(nginx: Nginx) -> int:
    """RSS of nginx's worker processes (the master's children)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == nginx.process.pid:
                total += rss_kib(int(stat.parent.name))
    return total


@contextlib.contextmanager
def two_instances_behind_nginx(st: Stack, *, unlimited: bool) -> Iterator[tuple]:
    apps = [start_server(st, **INSTANCE_ENV) for _ in range(2)]
    nginx = None
    try:
        nginx = start_nginx([f"127.0.0.1:{a.port}" for a in apps], unlimited=unlimited)
        yield nginx, apps
    finally:
        if nginx is not None:
            nginx.stop()
        for app in apps:
            app.stop()


# --------------------------------------------------------------------------- REST


ACCESS_LINE = re.compile(rb'" (\d{3}) \d+ .*? cache=(\S+) ')


def access_log(nginx: Nginx, offset: int) -> tuple[Counter[str], Counter[str], int]:
    """HTTP statuses and ``cache=`` statuses of the access-log lines after ``offset``, and
    the new offset."""
    data = nginx.log_path.read_bytes()
    lines = ACCESS_LINE.findall(data[offset:])
    statuses = Counter(status.decode() for status, _ in lines)
    cache = Counter(cache.decode() for _, cache in lines)
    return statuses, cache, len(data)


async def rest(st: Stack, *, videos: int, seconds: int, connections: int) -> None:
    print("rest_nginx_rate_limits: limit_req removed (wrk is one client address)")
    with two_instances_behind_nginx(st, unlimited=True) as (nginx, _apps):
        # after the instances started: the first one migrated the database
        hashes = await seed(st.database_url, videos)
        print(f"seeded_videos: {len(hashes)}")
        url = nginx.https_url
        warm = [f"/api/videos/{i:04x}" for i in range(256)]
        async with nginx.client() as client:
            for path in warm:
                assert (await client.get(path)).status_code in (200, 404)
        offset = access_log(nginx, 0)[2]
        runs = {
            "warm": lua_paths(warm),
            "distinct_prefixes": DISTINCT_LUA,
            "unique_query": unique_query_lua(warm),
        }
        results = {}
        for name, script in runs.items():
            figures = wrk(url, seconds=seconds, connections=connections, script=script)
            statuses, cache, offset = access_log(nginx, offset)
            total = sum(cache.values()) or 1
            results[name] = figures
            print(f"prefix_{name}_rps: {figures['rps']:.0f}")
            print(f"prefix_{name}_p50_ms: {figures['p50_ms']}")
            print(f"prefix_{name}_p99_ms: {figures['p99_ms']}")
            print(f"prefix_{name}_non_2xx: {figures['non_2xx']} of {figures['requests']}")
            print(f"prefix_{name}_nginx_hit_ratio: {cache['HIT'] / total:.3f}")
            print(f"prefix_{name}_nginx_cache_statuses: {dict(cache)}")
            print(f"prefix_{name}_http_statuses: {dict(statuses)}")
        warm_rps = results["warm"]["rps"]
        for name in ("distinct_prefixes", "unique_query"):
            print(f"prefix_warm_over_{name}: {warm_rps / results[name]['rps']:.1f}x")


# --------------------------------------------------------------------------- live


class TlsSubscriber(Subscriber):
    """A bench WebSocket subscriber that records a refused upgrade instead of raising."""

    refused: list[str]

    def data_received(self, data: bytes) -> None:
        try:
            super().data_received(data)
        except ConnectionError as exc:
            self.refused.append(str(exc).splitlines()[0])
            if self.transport is not None:
                self.transport.close()


def client_address(run: int, index: int) -> str:
    """Loopback source address of client ``index``: ``PER_ADDRESS`` clients share one."""
    n = index // PER_ADDRESS
    return f"127.{10 + run}.{n // 250}.{n % 250 + 1}"


async def connect(
    nginx: Nginx, log: FrameLog, count: int, run: int, parallel: int = 200
) -> tuple[list[TlsSubscriber], list[str]]:
    """Open ``count`` WebSocket clients through nginx; wait until each is welcomed or failed."""
    loop = asyncio.get_running_loop()
    context = nginx.ssl_context()
    subscribers: list[TlsSubscriber] = []
    failures: list[str] = []
    semaphore = asyncio.Semaphore(parallel)
    log.expected = count

    def make() -> TlsSubscriber:
        sub = TlsSubscriber(
            log, "127.0.0.1", nginx.https_port, "/api/live/ws", {"t": "hello", "v": 1}
        )
        sub.refused = failures
        return sub

    async def one(index: int) -> None:
        async with semaphore:
            try:
                _, sub = await loop.create_connection(
                    make,
                    "127.0.0.1",
                    nginx.https_port,
                    ssl=context,
                    local_addr=(client_address(run, index), 0),
                )
            except OSError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                return
            subscribers.append(sub)

    await asyncio.gather(*(one(i) for i in range(count)))
    deadline = time.monotonic() + 120
    while log.welcomes + len(failures) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return subscribers, failures


def reached(log: FrameLog, video: str) -> int:
    """How many clients received a frame holding ``video`` (frames differ per instance)."""
    return sum(len(log.arrivals[p]) for p, (_, _, ids) in log.decoded.items() if video in ids)


async def live_run(st: Stack, count: int, run: int, votes: int) -> None:
    tag = f"live_{count}"
    with two_instances_behind_nginx(st, unlimited=False) as (nginx, apps):
        await asyncio.sleep(1)  # let the fresh instances settle before reading RSS
        rss_before = [rss_kib(a.process.pid) for a in apps]
        nginx_before = nginx_workers_rss_kib(nginx)
        log = FrameLog()
        started = time.monotonic()
        subscribers, failures = await connect(nginx, log, count, run)
        connect_s = time.monotonic() - started
        print(f"{tag}_connect_seconds: {connect_s:.2f}")
        print(f"{tag}_welcomed: {log.welcomes}")
        print(f"{tag}_failed: {len(failures)} {Counter(failures).most_common(3)}")
        per_instance = []
        for app in apps:
            async with httpx.AsyncClient(base_url=app.url) as client:
                live = (await client.get("/health/ready")).json()["checks"]["live"]
            per_instance.append(sum(live["connections"].values()))
        print(f"{tag}_per_instance_connections: {per_instance}")
        await asyncio.sleep(1)  # let the allocators settle before reading RSS
        growth = [rss_kib(a.process.pid) - b for a, b in zip(apps, rss_before, strict=True)]
        print(f"{tag}_instance_rss_kib: {[rss_kib(a.process.pid) for a in apps]}")
        print(f"{tag}_instance_rss_growth_kib: {growth}")
        kib_per = sum(growth) / max(sum(per_instance), 1)
        print(f"{tag}_instance_kib_per_connection: {kib_per:.1f}")
        nginx_growth = nginx_workers_rss_kib(nginx) - nginx_before
        print(f"{tag}_nginx_workers_rss_growth_kib: {nginx_growth}")
        print(f"{tag}_nginx_kib_per_client: {nginx_growth / max(log.welcomes, 1):.1f}")

        sent: dict[str, float] = {}
        complete = 0
        for n in range(votes):
            video = secrets.token_urlsafe(8)[:11]
            body = {"videoId": video, "category": "fully_ai", "userId": secrets.token_hex(32)}
            # each vote from an address of its own: the votes zone allows 10/min per address
            async with nginx.client(local_address=f"127.9.{run}.{n + 1}") as client:
                sent[video] = time.monotonic()
                r = await client.post("/api/votes", json=body)
            r.raise_for_status()
            deadline = time.monotonic() + 30
            while reached(log, video) < log.welcomes and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            complete += reached(log, video) >= log.welcomes
        hist, _ = latencies(log, sent)
        print(f"{tag}_votes_reaching_every_client: {complete} of {votes}")
        print(f"{tag}_deliveries: {sum(hist.values())} of {votes * log.welcomes}")
        print(f"{tag}_delivery_p50_ms: {hist_percentile(hist, 50):.0f}")
        print(f"{tag}_delivery_p99_ms: {hist_percentile(hist, 99):.0f}")
        print(f"{tag}_delivery_max_ms: {max(hist) if hist else float('nan')}")
        print(f"{tag}_closes_seen: {Counter(log.closes).most_common(3)}")
        print(f"{tag}_nginx_errors: {nginx_problems(nginx)}")
        for sub in subscribers:
            if sub.transport is not None:
                sub.transport.close()


# --------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> None:
    with stack() as st:
        # live first: the lookups seed many videos, whose full-blob builds at an instance's
        # start would blur its idle RSS
        if not args.skip_live:
            for index, count in enumerate(args.connections):
                await live_run(st, count, index, args.votes)
        if not args.skip_rest:
            await rest(
                st, videos=args.videos, seconds=args.seconds, connections=args.wrk_connections
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, nargs="+", default=[2000, 4000])
    parser.add_argument("--votes", type=int, default=10, help="votes per live run")
    parser.add_argument("--videos", type=int, default=100_000, help="seeded for the lookups")
    parser.add_argument("--seconds", type=int, default=10, help="per wrk run")
    parser.add_argument("--wrk-connections", type=int, default=64)
    parser.add_argument("--skip-rest", action="store_true")
    parser.add_argument("--skip-live", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None and not args.skip_rest:
        raise SystemExit("wrk is needed: apt-get install wrk")
    raise_fd_limit()
    version = subprocess.run([nginx_binary() or "nginx", "-v"], capture_output=True, text=True)
    print(f"nginx: {version.stderr.strip()}")
    print(f"openssl: {ssl.OPENSSL_VERSION}")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
