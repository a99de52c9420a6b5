"""Full-sync herd: after an epoch change every client fetches ``GET /api/sync/full`` at once.

    python -m bench.herd_fullsync --clients 2000 --videos 100000 --repeat 3

``--videos`` flagged videos are seeded, the full document is built (one request), then
``--clients`` clients, each from a loopback source address of its own (``--per-address``
share one), send one full sync each at the same instant (gzip accepted, no ``If-None-Match``:
their old ETag is of the previous epoch). Two targets, each with fresh instances:

- ``direct``: one instance (``--processes`` = its ``WEB_CONCURRENCY``);
- ``nginx``: the shipped nginx config (HTTPS, its proxy cache and ``proxy_cache_lock``; the
  cache starts empty) in front of two instances (bench/nginx_stack.py).

Printed per run: seconds until every client has its whole answer, per-request p50/p99,
answers by status (5xx must be 0) and connection failures, bytes per answer, the instances'
peak RSS (and nginx workers'), the instances' CPU, PostgreSQL transactions during the herd,
nginx's cache statuses. Then medians per target. ``--baseline-tree DIR`` measures an
earlier commit's server as well, run for run. Uses DATABASE_URL/REDIS_URL when set, else
an embedded stack in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import statistics
import time
from collections import Counter
from dataclasses import dataclass

import asyncpg
import httpx
import uvloop

from bench.flood_client import source_address
from bench.harness import (
    PeakRss,
    ServerProcess,
    Stack,
    cpu_seconds,
    percentile,
    pg_activity,
    raise_fd_limit,
    server_tree,
    server_trees,
    stack,
    start_server,
)
from bench.nginx_stack import access_log, nginx_workers_rss_kib, two_instances_behind_nginx
from bench.rest_load import seed
from realtube_push.store import db

STATS_SETTLE = 1.5


@dataclass
class Answer:
    status: int  # 0: the connection failed
    seconds: float
    size: int


async def full_sync(
    port: int, address: str, start: asyncio.Event, context: ssl.SSLContext | None
) -> Answer:
    """One ``GET /api/sync/full`` (gzip) from ``address``, sent when ``start`` is set."""
    request = (
        f"GET /api/sync/full HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept-Encoding: gzip\r\n"
        "Accept: application/json\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=(address, 0), ssl=context
        )
    except OSError:
        return Answer(0, 0.0, 0)
    await start.wait()
    t0 = time.monotonic()
    try:
        writer.write(request)
        size, first = 0, b""
        while chunk := await reader.read(1 << 16):
            if not first:
                first = chunk[:16]
            size += len(chunk)
        status = int(first.split(b" ", 2)[1]) if first.startswith(b"HTTP/") else 0
        return Answer(status, time.monotonic() - t0, size)
    except (OSError, ssl.SSLError):
        return Answer(0, time.monotonic() - t0, 0)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def herd(
    st: Stack,
    apps: list[ServerProcess],
    port: int,
    context: ssl.SSLContext | None,
    args: argparse.Namespace,
    extra_rss: list[int],
    proxy_pid: int | None = None,
) -> dict:
    """All clients connected, then one full sync each at the same instant."""
    start = asyncio.Event()
    tasks = [
        asyncio.create_task(full_sync(port, source_address(i // args.per_address), start, context))
        for i in range(args.clients)
    ]
    await asyncio.sleep(max(2.0, args.clients / 1000))  # every connection open (and TLS done)
    pg0 = await pg_activity(st.database_url)
    cpu0 = sum(cpu_seconds(a.process.pid) for a in apps)
    proxy0 = cpu_seconds(proxy_pid) if proxy_pid else 0.0
    own0 = time.process_time()
    with contextlib.ExitStack() as sampling:
        peaks = [sampling.enter_context(PeakRss(a.process.pid)) for a in apps]
        t0 = time.monotonic()
        start.set()
        answers = await asyncio.gather(*tasks)
        elapsed = time.monotonic() - t0
    cpu = sum(cpu_seconds(a.process.pid) for a in apps) - cpu0
    proxy = (cpu_seconds(proxy_pid) - proxy0) if proxy_pid else 0.0
    own = time.process_time() - own0
    await asyncio.sleep(STATS_SETTLE)
    pg1 = await pg_activity(st.database_url)
    statuses = Counter(a.status for a in answers)
    ok = [a for a in answers if a.status == 200]
    return {
        "all_served_s": round(elapsed, 2),
        "p50_s": round(percentile([a.seconds for a in ok], 50), 2),
        "p99_s": round(percentile([a.seconds for a in ok], 99), 2),
        "ok": len(ok),
        "http_5xx": sum(n for s, n in statuses.items() if s >= 500),
        "failed": statuses.get(0, 0),
        "statuses": dict(statuses),
        "answer_kib": round(statistics.median(a.size for a in ok) / 1024, 1) if ok else 0,
        "app_peak_rss_mib": round(sum(p.peak for p in peaks) / 1024, 1),
        "app_cpu_s": round(cpu, 2),
        "app_cpu_ms_per_sync": round(cpu * 1000 / max(len(answers), 1), 2),
        "nginx_cpu_s": round(proxy, 2),
        # the load generator reads every byte (and decrypts it through nginx): on a shared
        # machine it, not the server, can set the time to serve all
        "loadgen_cpu_s": round(own, 2),
        "pg_transactions": int(pg1["transactions"] - pg0["transactions"]),
        "extra_peak_rss_mib": round(max(extra_rss, default=0) / 1024, 1),
    }


async def warm(url: str, context: ssl.SSLContext | bool = True) -> int:
    """One full sync (builds the document if none is stored yet); its status."""
    async with httpx.AsyncClient(verify=context, timeout=120) as client:
        r = await client.get(f"{url}/api/sync/full", headers={"Accept-Encoding": "gzip"})
        return r.status_code


async def run_direct(st: Stack, args: argparse.Namespace) -> dict:
    app = start_server(st, WEB_CONCURRENCY=args.processes)
    try:
        assert await warm(app.url) == 200
        return {"target": "direct"} | await herd(st, [app], app.port, None, args, [])
    finally:
        app.stop()


async def run_nginx(st: Stack, args: argparse.Namespace) -> dict:
    with two_instances_behind_nginx(st, unlimited=False) as (nginx, apps):
        context = nginx.ssl_context()
        _, _, offset = access_log(nginx, 0)
        rss: list[int] = []
        sampling = True

        async def sample() -> None:
            while sampling:
                rss.append(nginx_workers_rss_kib(nginx))
                await asyncio.sleep(0.2)

        sampler = asyncio.create_task(sample())
        result = await herd(
            st, apps, nginx.https_port, context, args, rss, proxy_pid=nginx.process.pid
        )
        sampling = False
        await sampler
        _, cache, _ = access_log(nginx, offset)
        return {"target": "nginx"} | result | {"nginx_cache": dict(cache)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--per-address", type=int, default=4)
    parser.add_argument("--targets", nargs="+", default=["direct", "nginx"])
    parser.add_argument("--processes", default="1", help="WEB_CONCURRENCY (direct)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--baseline-tree", help="a checkout of an earlier commit: its server is measured too"
    )
    args = parser.parse_args()
    raise_fd_limit()
    with stack() as st:
        conn = await asyncpg.connect(st.database_url)
        try:
            await db.apply_migrations(conn)
        finally:
            await conn.close()
        await seed(st.database_url, args.videos)
        runs: list[dict] = []
        servers = server_trees(args.baseline_tree)
        for _ in range(args.repeat):
            for target in args.targets:
                for name, tree in servers.items():
                    with server_tree(tree):
                        run = run_direct if target == "direct" else run_nginx
                        result = {"server": name} | await run(st, args)
                    print(" ".join(f"{k}={v}" for k, v in result.items()), flush=True)
                    runs.append(result)
        for target in args.targets:
            for name in servers:
                mine = [r for r in runs if r["target"] == target and r["server"] == name]
                keys = [k for k, v in mine[0].items() if isinstance(v, int | float)]
                med = {k: statistics.median(r[k] for r in mine) for k in keys}
                print(f"median server={name} target={target} "
                      + " ".join(f"{k}={v}" for k, v in med.items()), flush=True)  # fmt: skip


if __name__ == "__main__":
    uvloop.run(main())
