"""Reconnect herd: N live clients on instance A; A is stopped (SIGTERM: ``reconnect``
notices; SIGKILL: no notice) and the clients come back to instance B with their cursors
while votes keep flowing.

    python -m bench.herd_reconnect --clients 1000 5000 10000 --signals term kill --repeat 3

Both instances share one PostgreSQL and Redis; clients connect from many loopback source
addresses (``--per-address``, below the per-address limit, so it is not what is measured)
and behave as docs/protocol.md's state machine (bench/herd_client.py). Votes are posted to B
at ``--rate``/s, each on a fresh video, from before the signal until the end.

Printed per run: seconds from the signal until 99 % and 100 % of the clients are live again
(welcomed by B and caught up with the head as of their welcome), B's CPU (seconds, and cores)
and peak RSS from the signal until 100 %, PostgreSQL work during the herd (transactions,
reads of the sync log, statements if ``pg_stat_statements`` is loaded) next to the same
span measured just before the signal (votes flowing, both instances and their workers up:
not a baseline to subtract per client), handshakes shed (503 / close 1013) as the clients
saw them, B's live counters that moved, and deltas missing (must be 0): holes between
frames, plus the head minus each client's final cursor; and, for ``--residents`` clients
already on B before the signal, vote -> delivered latency (p50/p99/max over every (resident,
vote) pair) for the votes sent during the herd, with the share of those pairs delivered, and
for the votes of ``--baseline`` seconds once every client is back (B alone, same load).
Then medians per (N, signal).
``--baseline-tree DIR`` (e.g. ``git archive`` of an earlier commit unpacked there) measures
that commit's server as well, alternating run for run with the current one.
Uses DATABASE_URL/REDIS_URL when set, else an embedded stack in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import statistics
import time

import httpx
import uvloop

from bench.flood_client import source_address
from bench.harness import (
    PeakRss,
    ServerProcess,
    Stack,
    counter_deltas,
    cpu_seconds,
    kill_tree,
    percentile,
    pg_activity,
    raise_fd_limit,
    rss_kib,
    scrape_metrics,
    server_tree,
    server_trees,
    stack,
    start_server,
)
from bench.herd_client import Herd, HerdClient, HerdConnection, run_client
from bench.live_load import hist_percentile, latencies
from bench.wsclient import FrameLog, Subscriber, open_subscribers

CATEGORIES = ("fully_ai", "ai_voiceover", "ai_visuals", "ai_thumbnails", "ai_assisted")
STATS_SETTLE = 1.5  # s: PostgreSQL backends report their statistics ~1 s after going idle
LIVE_COUNTERS = r"realtube_live_|shed|replay|handshake"


async def vote_stream(
    url: str, rate: float, stop: asyncio.Event, sent: dict[str, float]
) -> tuple[int, int]:
    """Votes on fresh videos at ``rate``/s until ``stop``, noting in ``sent`` when each
    video's vote left; returns how many were answered with 200, and how many failed (an
    error status or no answer within 30 s)."""
    done = failed = 0
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with (
        httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client,
        asyncio.TaskGroup() as tg,
    ):

        async def one(n: int) -> None:
            nonlocal done, failed
            video = secrets.token_urlsafe(8)[:11]
            body = {
                "videoId": video,
                "category": CATEGORIES[n % 5],
                "userId": secrets.token_hex(32),
            }
            sent[video] = time.monotonic()
            try:
                (await client.post("/api/votes", json=body)).raise_for_status()
                done += 1
            except httpx.HTTPError:
                failed += 1

        # at most 32 votes in flight: a server that falls behind gets fewer votes rather
        # than a pile of pending requests (httpx's pool is slow with thousands waiting, and
        # the load generator's loop also reads every client's frames)
        in_flight = asyncio.Semaphore(32)

        async def paced(n: int) -> None:
            try:
                await one(n)
            finally:
                in_flight.release()

        start, n = time.monotonic(), 0
        while not stop.is_set():
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                continue
            await in_flight.acquire()
            tg.create_task(paced(n))
            n += 1
    return done, failed


async def head_of(herd: Herd, port: int) -> int:
    """The instance's head: the ``seq`` of a fresh connection's welcome. The probe is shed
    like any client while the instance is busy, and waits as told before trying again."""
    loop = asyncio.get_running_loop()
    for _ in range(30):
        probe = HerdClient(address="127.0.0.1")
        conn = HerdConnection(Herd(herd.host, port), probe)
        await loop.create_connection(lambda c=conn: c, herd.host, port)
        await asyncio.wait({conn.greeted, conn.closed}, timeout=30)
        if conn.transport is not None:
            conn.transport.close()
        if probe.welcome_seq is not None:
            return probe.welcome_seq
        await asyncio.sleep(conn.retry_after or 1.0)
    raise RuntimeError("the instance refused every probe for its head")


async def settled_head(herd: Herd, port: int) -> int:
    """The head once it has stopped moving for 2 s (the last votes scored and published)."""
    head = await head_of(herd, port)
    while True:
        await asyncio.sleep(2)
        now = await head_of(herd, port)
        if now == head:
            return head
        head = now


async def one_run(st: Stack, n: int, sig: str, args: argparse.Namespace) -> dict:
    """Fresh instances A and B, ``n`` clients on A, the herd to B; returns the figures."""
    env = {
        "LIVE_IDLE_TIMEOUT_SECONDS": "3600",
        "SCORE_DEBOUNCE_MS": "50",
        "WEB_CONCURRENCY": args.processes,
        **dict(item.split("=", 1) for item in args.env),
    }
    # A's admission is not what is measured: the clients' first connections are not shed
    a = start_server(st, **(env | {"LIVE_ACCEPT_RATE": "0"}))
    b: ServerProcess | None = None
    herd = Herd("127.0.0.1", a.port)
    clients = [HerdClient(source_address(i // args.per_address)) for i in range(n)]
    herd.restart_count(0.0, clients)
    stop_votes = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    sent: dict[str, float] = {}
    residents = FrameLog()
    resident_subs: list[Subscriber] = []
    try:
        b = start_server(st, **env)
        # clients already on B when the herd comes: their latency is what admission protects
        first_free = n // args.per_address + 1
        resident_subs = await open_subscribers(
            residents,
            "127.0.0.1",
            b.port,
            args.residents,
            hello={"t": "hello", "v": 1},
            source=lambda i: source_address(first_free + i // args.per_address),
        )
        ramp = asyncio.Semaphore(200)
        t0 = time.monotonic()
        tasks += [asyncio.create_task(run_client(herd, c, ramp)) for c in clients]
        await asyncio.wait_for(herd.all_live.wait(), 300)
        connect_s = time.monotonic() - t0
        votes = asyncio.create_task(vote_stream(b.url, args.rate, stop_votes, sent))
        await asyncio.sleep(2)
        # the same span before the signal (A and B both up), beside the herd's PostgreSQL work
        base0 = await pg_activity(st.database_url)
        await asyncio.sleep(args.baseline)
        base1 = await pg_activity(st.database_url)
        metrics0 = scrape_metrics(b.url)
        pg0 = await pg_activity(st.database_url)
        cpu0, own0 = cpu_seconds(b.process.pid), time.process_time()
        with PeakRss(b.process.pid) as peak:
            herd.port = b.port  # the load balancer stops sending clients to A
            rss0 = rss_kib(b.process.pid)
            t_sig = time.monotonic()
            herd.restart_count(t_sig, clients)
            if sig == "term":
                a.process.send_signal(signal.SIGTERM)
            else:
                kill_tree(a.process.pid)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(herd.all_live.wait(), args.timeout)
            t_end = time.monotonic()
            cpu = cpu_seconds(b.process.pid) - cpu0
            own = time.process_time() - own0
        await asyncio.sleep(STATS_SETTLE)
        pg1 = await pg_activity(st.database_url)
        metrics1 = scrape_metrics(b.url)
        rss1 = rss_kib(b.process.pid)
        # the residents' latency once the herd is in: B alone with every client, votes on
        t_after = time.monotonic()
        await asyncio.sleep(args.baseline)
        t_after_end = time.monotonic()
        stop_votes.set()
        voted, vote_failures = await votes
        head = await settled_head(herd, b.port)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(c.cursor != head for c in clients):
            await asyncio.sleep(0.2)
    finally:
        herd.stopping = True
        stop_votes.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in clients:
            c.hang_up()
        for sub in resident_subs:
            if sub.transport is not None:
                sub.transport.close()
        await asyncio.sleep(0.5)  # let the servers see them go: their stop need not wait
        a.stop()
        if b is not None:
            b.stop()
    live = sorted(c.live_at - t_sig for c in clients if c.live_at is not None)
    herd_s = t_end - t_sig
    span = herd_s + STATS_SETTLE
    base_span = args.baseline
    during = resident_latency(residents, sent, t_sig, t_end, args.residents)
    steady = resident_latency(residents, sent, t_after, t_after_end, args.residents)
    resumes: dict[str, int] = {}
    for c in clients:
        for k, v in c.resumes.items():
            resumes[k] = resumes.get(k, 0) + v
    return {
        "clients": n,
        "signal": sig,
        "connect_s": round(connect_s, 1),
        "live_50_s": round(percentile(live, 50), 2) if len(live) >= 0.5 * n else float("nan"),
        "live_99_s": round(percentile(live, 99), 2) if len(live) >= 0.99 * n else float("nan"),
        "live_100_s": round(live[-1], 2) if len(live) == n else float("nan"),
        "live_clients": len(live),
        "server_cpu_s": round(cpu, 2),
        "server_cores": round(cpu / herd_s, 2),
        "peak_rss_mib": round(peak.peak / 1024, 1),
        "rss_before_mib": round(rss0 / 1024, 1),
        "rss_per_client_kib": round((rss1 - rss0) / n, 1),
        "pg_transactions": int(pg1["transactions"] - pg0["transactions"]),
        "pg_transactions_votes_alone": round(
            (base1["transactions"] - base0["transactions"]) * span / base_span
        ),
        "pg_log_reads": int(pg1["log_reads"] - pg0["log_reads"]),
        "pg_log_reads_votes_alone": round(
            (base1["log_reads"] - base0["log_reads"]) * span / base_span
        ),
        "pg_statements": pg1["statements"] - pg0["statements"],
        "shed_503": sum(c.shed_503 for c in clients),
        "shed_1013": sum(c.shed_1013 for c in clients),
        "failed_connects": sum(c.failed_connects for c in clients),
        "reconnect_notices": sum(c.reconnect_notices for c in clients),
        "max_retry_after_s": max((c.max_retry_after for c in clients), default=0.0),
        "resumes": resumes,
        "resyncs": sum(c.resyncs for c in clients),
        "votes": voted,
        "vote_failures": vote_failures,
        "deltas_missing": sum(c.missing for c in clients)
        + sum(head - (c.cursor if c.cursor is not None else 0) for c in clients),
        "overlapping_frames": sum(c.overlaps for c in clients),
        "resident_p50_herd_ms": during["p50"],
        "resident_p99_herd_ms": during["p99"],
        "resident_max_herd_ms": during["max"],
        "resident_delivered_herd": during["delivered"],
        "resident_p50_after_ms": steady["p50"],
        "resident_p99_after_ms": steady["p99"],
        "loadgen_cores": round(own / herd_s, 2),
        "server_counters": counter_deltas(metrics0, metrics1, LIVE_COUNTERS),
    }


def resident_latency(
    log: FrameLog, sent: dict[str, float], since: float, until: float, residents: int
) -> dict[str, float]:
    """Vote -> delivered (ms) at the resident clients, over the votes sent in
    [since, until): p50, p99, max, and the share of (resident, vote) pairs delivered."""
    window = {video: t for video, t in sent.items() if since <= t < until}
    hist, _ = latencies(log, window)
    pairs = residents * len(window)
    return {
        "p50": hist_percentile(hist, 50),
        "p99": hist_percentile(hist, 99),
        "max": float(max(hist, default=0)),
        "delivered": round(sum(hist.values()) / pairs, 4) if pairs else float("nan"),
    }


NUMERIC = (
    "live_50_s",
    "live_99_s",
    "live_100_s",
    "server_cpu_s",
    "server_cores",
    "peak_rss_mib",
    "rss_per_client_kib",
    "pg_transactions",
    "pg_transactions_votes_alone",
    "pg_log_reads",
    "pg_log_reads_votes_alone",
    "shed_503",
    "shed_1013",
    "deltas_missing",
    "loadgen_cores",
    "resident_p50_herd_ms",
    "resident_p99_herd_ms",
    "resident_max_herd_ms",
    "resident_delivered_herd",
    "resident_p50_after_ms",
    "resident_p99_after_ms",
)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1000])
    parser.add_argument("--signals", nargs="+", default=["term", "kill"], choices=["term", "kill"])
    parser.add_argument("--rate", type=float, default=100.0, help="votes/s during the herd")
    parser.add_argument("--per-address", type=int, default=10, help="clients per source address")
    parser.add_argument(
        "--residents", type=int, default=500, help="clients on B before the herd (latency)"
    )
    parser.add_argument("--baseline", type=float, default=5.0, help="s of votes alone measured")
    parser.add_argument("--timeout", type=float, default=120.0, help="s to wait for 100 %%")
    parser.add_argument("--processes", default="1", help="WEB_CONCURRENCY of each instance")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--baseline-tree",
        help="a checkout of an earlier commit: its server is measured too, run for run",
    )
    args = parser.parse_args()
    raise_fd_limit()
    servers = server_trees(args.baseline_tree)
    with stack() as st:
        for n in args.clients:
            for sig in args.signals:
                runs: dict[str, list[dict]] = {name: [] for name in servers}
                for _ in range(args.repeat):
                    for name, tree in servers.items():
                        with server_tree(tree):
                            result = {"server": name} | await one_run(st, n, sig, args)
                        print(" ".join(f"{k}={v}" for k, v in result.items()), flush=True)
                        runs[name].append(result)
                for name, mine in runs.items():
                    if len(mine) > 1:
                        med = {k: statistics.median(r[k] for r in mine) for k in NUMERIC}
                        print(f"median server={name} clients={n} signal={sig} " + " ".join(
                            f"{k}={v}" for k, v in med.items()), flush=True)  # fmt: skip


if __name__ == "__main__":
    uvloop.run(main())
