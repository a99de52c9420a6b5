"""Live-channel load: N WebSocket subscribers on one instance while votes flow through the API.

Reports, per run: server RSS per connection, vote -> delivered latency p50/p99 over every
(subscriber, vote) pair and of each vote's first arrival, frames/s and deltas/s delivered,
server CPU per 1,000 deltas and per frame (the server's whole process tree) and the fan-out
passes' own CPU per frame (``realtube_live_fanout_cpu_seconds_total``), the load generator's
own CPU; then a batched phase (votes as fast as the API takes them) for
peak deltas/s.

    python -m bench.live_load --connections 1000 5000 10000 --rate 100 --duration 15 \
        --repeat 3 [--processes 2] [--naive] [--profile /tmp/prof]

``--naive`` measures bench/naive_broadcast.py instead (the baseline); ``--repeat`` runs each
N on a fresh server several times and prints the medians. Uses DATABASE_URL/REDIS_URL when
set, else an embedded stack in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import statistics
import sys
import time
from collections import Counter

import httpx
import uvloop

from bench.harness import (
    ServerProcess,
    Stack,
    cpu_seconds,
    raise_fd_limit,
    rss_kib,
    scrape_metrics,
    stack,
    start_server,
)
from bench.wsclient import FrameLog, open_subscribers

CATEGORIES = ("fully_ai", "ai_voiceover", "ai_visuals", "ai_thumbnails", "ai_assisted")


def hist_percentile(hist: Counter[int], q: float) -> float:
    """Percentile (ms) from a histogram of whole milliseconds."""
    total = sum(hist.values())
    if not total:
        return float("nan")
    target = total * q / 100
    seen = 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen >= target:
            return float(ms)
    return float(max(hist))


async def post_votes(
    client: httpx.AsyncClient,
    sent: dict[str, float],
    *,
    rate: float,
    duration: float,
    concurrency: int,
) -> int:
    """Post votes on fresh videos at ``rate``/s, or (rate 0) from ``concurrency`` loops
    as fast as the API answers."""
    end = time.monotonic() + duration
    count = 0

    async def one() -> None:
        nonlocal count
        count += 1
        video = secrets.token_urlsafe(8)[:11]
        body = {
            "videoId": video,
            "category": CATEGORIES[count % 5],
            "userId": secrets.token_hex(32),
        }
        sent[video] = time.monotonic()
        response = await client.post("/api/votes", json=body)
        response.raise_for_status()

    async def flat_out() -> None:
        while time.monotonic() < end:
            await one()

    async with asyncio.TaskGroup() as tg:
        if not rate:
            for _ in range(concurrency):
                tg.create_task(flat_out())
        else:
            start, n = time.monotonic(), 0
            while time.monotonic() < end:
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tg.create_task(one())
                n += 1
    return count


async def wait_delivered(log: FrameLog, videos: set[str], subscribers: int, timeout: float) -> bool:
    """Until every subscriber has a frame with each video (or the timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # a video travels in one frame per subscriber, but processes of one instance
        # (WEB_CONCURRENCY) batch differently: count its arrivals over every payload
        reached: Counter[str] = Counter()
        for payload, (_, _, ids) in log.decoded.items():
            arrivals = len(log.arrivals[payload])
            for video in ids:
                reached[video] += arrivals
        if all(reached[video] >= subscribers for video in videos):
            return True
        await asyncio.sleep(0.1)
    return False


def fanout_cpu(url: str, processes: int) -> float:
    """The server's CPU seconds in fan-out passes so far, summed over its ``processes``:
    each scrape is a new connection, which the kernel hands to one of them, so it scrapes
    until it has heard from each (``realtube_instance_info`` names the process)."""
    seen: dict[str, float] = {}
    for _ in range(50 * processes):
        sample = scrape_metrics(url)
        instance = next(k for k in sample if k.startswith("realtube_instance_info"))
        seen[instance] = sample["realtube_live_fanout_cpu_seconds_total"]
        if len(seen) == processes:
            return sum(seen.values())
    raise RuntimeError(f"heard from {len(seen)} of {processes} server processes")


def latencies(log: FrameLog, sent: dict[str, float]) -> tuple[Counter[int], Counter[int]]:
    """Histograms (ms) of arrival - send over every (subscriber, vote) pair, and of each
    vote's first arrival (the pipeline before the fan-out: vote, scoring, publish)."""
    hist: Counter[int] = Counter()
    first: dict[str, float] = {}
    for payload, (_, _, ids) in log.decoded.items():
        arrivals = log.arrivals[payload]
        earliest = min(arrivals, default=float("inf"))
        for video in ids:
            t0 = sent.get(video)
            if t0 is not None:
                hist.update(int((a - t0) * 1000) for a in arrivals)
                first[video] = min(first.get(video, earliest), earliest)
    firsts = Counter(int((t - sent[video]) * 1000) for video, t in first.items())
    return hist, firsts


async def run_one(
    server: ServerProcess,
    connections: int,
    rate: float,
    duration: float,
    batched: float,
    profile: str | None = None,
    processes: int | None = None,
) -> dict[str, float]:
    pid = server.process.pid
    rss_before = rss_kib(pid)
    log = FrameLog()
    t0 = time.monotonic()
    subs = await open_subscribers(
        log, "127.0.0.1", server.port, connections, hello={"t": "hello", "v": 1}
    )
    connect_s = time.monotonic() - t0
    await asyncio.sleep(2)  # let allocator settle before reading RSS
    rss_after = rss_kib(pid)
    result: dict[str, float] = {
        "connections": connections,
        "connect_seconds": round(connect_s, 2),
        "rss_kib_idle_server": rss_before,
        "rss_kib_per_connection": round((rss_after - rss_before) / connections, 1),
    }
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
        sent: dict[str, float] = {}
        pass0 = fanout_cpu(server.url, processes) if processes else 0.0
        cpu0, t_start = cpu_seconds(pid), time.monotonic()
        own_cpu0 = time.process_time()
        frames0, deltas0, bytes0 = log.frames, log.deltas, log.bytes
        spy = None
        if profile:
            spy = await asyncio.create_subprocess_exec(
                "py-spy", "record", "--pid", str(pid), "--duration", str(int(duration)),
                "--subprocesses", "--format", "raw", "--output", f"{profile}-{connections}.txt",
                "--nonblocking", stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        votes = await post_votes(client, sent, rate=rate, duration=duration, concurrency=32)
        if spy is not None:
            await spy.wait()
        complete = await wait_delivered(log, set(sent), connections, timeout=30)
        t_end = max((max(a) for a in log.arrivals.values() if a), default=time.monotonic())
        cpu = cpu_seconds(pid) - cpu0
        frames = max(log.frames - frames0, 1)
        if processes:
            result["pass_cpu_us_per_frame"] = round(
                (fanout_cpu(server.url, processes) - pass0) * 1e6 / frames, 2
            )
        hist, firsts = latencies(log, sent)
        window = t_end - t_start
        delivered = log.deltas - deltas0
        result |= {
            "votes": votes,
            "vote_rate": round(votes / duration, 1),
            "all_delivered": complete,
            "latency_p50_ms": hist_percentile(hist, 50),
            "latency_p99_ms": hist_percentile(hist, 99),
            "latency_max_ms": float(max(hist) if hist else 0),
            "first_arrival_p50_ms": hist_percentile(firsts, 50),
            "first_arrival_p99_ms": hist_percentile(firsts, 99),
            "frames_per_s": round((log.frames - frames0) / window),
            "frame_bytes": round((log.bytes - bytes0) / frames),
            "server_cpu_us_per_frame": round(cpu * 1e6 / frames, 2),
            "deltas_per_s": round(delivered / window),
            "server_cpu_ms_per_1000_deltas": round(cpu * 1e6 / max(delivered, 1), 2),
            "server_cpu_util": round(cpu / window, 2),
            # the load generator shares the machine: a saturated one inflates the latencies
            "loadgen_cpu_util": round((time.process_time() - own_cpu0) / window, 2),
        }
        if batched:
            log.arrivals.clear()
            log.decoded.clear()
            sent_b: dict[str, float] = {}
            frames0, deltas0 = log.frames, log.deltas
            cpu0, t_start = cpu_seconds(pid), time.monotonic()
            votes_b = await post_votes(client, sent_b, rate=0, duration=batched, concurrency=48)
            await wait_delivered(log, set(sent_b), connections, timeout=60)
            t_end = max((max(a) for a in log.arrivals.values() if a), default=time.monotonic())
            window = t_end - t_start
            delivered = log.deltas - deltas0
            hist, _ = latencies(log, sent_b)
            result |= {
                "batched_votes_per_s": round(votes_b / batched),
                "batched_deltas_per_s": round(delivered / window),
                "batched_frames_per_s": round((log.frames - frames0) / window),
                "batched_deltas_per_frame": round(delivered / max(log.frames - frames0, 1), 1),
                "batched_latency_p50_ms": hist_percentile(hist, 50),
                "batched_latency_p99_ms": hist_percentile(hist, 99),
                "batched_server_cpu_ms_per_1000_deltas": round(
                    (cpu_seconds(pid) - cpu0) * 1e6 / max(delivered, 1), 2
                ),
            }
    for sub in subs:
        if sub.transport is not None:
            sub.transport.close()
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, nargs="+", default=[1000])
    parser.add_argument("--rate", type=float, default=100.0, help="votes/s in the steady phase")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--batched", type=float, default=10.0, help="seconds of max-rate votes")
    parser.add_argument("--debounce-ms", default="50")
    parser.add_argument("--processes", default="1", help="WEB_CONCURRENCY of the server")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="more server settings"
    )
    parser.add_argument(
        "--profile", help="py-spy the server in the steady phase: PREFIX-<N>.txt (collapsed)"
    )
    parser.add_argument(
        "--floor", action="store_true", help="bench/write_floor.py after each N's runs"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per N (medians printed)")
    parser.add_argument(
        "--naive", action="store_true", help="measure the baseline (bench/naive_broadcast.py)"
    )
    args = parser.parse_args()
    raise_fd_limit()
    with stack() as st:
        for n in args.connections:
            runs = [await one_run(st, n, args) for _ in range(args.repeat)]
            if args.floor:
                await against_floor(runs, n)
            if len(runs) > 1:
                print("median " + " ".join(f"{k}={v}" for k, v in medians(runs).items()))


async def against_floor(runs: list[dict[str, float]], n: int) -> None:
    """bench/write_floor.py with ``n`` sockets and the runs' median frame size, right after
    them; adds the floor's CPU per write and each run's CPU per frame as a ratio to it."""
    size = int(statistics.median(r["frame_bytes"] for r in runs))
    floor = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.write_floor", str(n), str(size),
        stdout=asyncio.subprocess.PIPE, preexec_fn=raise_fd_limit,
    )  # fmt: skip
    out, _ = await floor.communicate()
    cpu = [float(m) for m in re.findall(r"([\d.]+) us CPU", out.decode())]
    floor_us = statistics.median(cpu[1:] or cpu)  # the first round warms the buffers up
    for r in runs:
        r["floor_us_per_write"] = floor_us
        r["frame_cpu_vs_floor"] = round(r["server_cpu_us_per_frame"] / floor_us, 2)
        if "pass_cpu_us_per_frame" in r:
            r["pass_cpu_vs_floor"] = round(r["pass_cpu_us_per_frame"] / floor_us, 2)
    print(f"write floor: {n} sockets x {size} B: {floor_us} us CPU per write; per run: "
          + ", ".join(str(r["frame_cpu_vs_floor"]) for r in runs)
          + "; the passes alone: "
          + ", ".join(str(r.get("pass_cpu_vs_floor", "-")) for r in runs), flush=True)  # fmt: skip


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """The median of every figure over ``runs``."""
    return {k: statistics.median(float(r[k]) for r in runs) for k in runs[0]}


async def one_run(st: Stack, n: int, args: argparse.Namespace) -> dict[str, float]:
    """A fresh server, ``n`` subscribers, the phases; prints and returns the figures."""
    server = start_server(
        st,
        args=[sys.executable, "-m", "bench.naive_broadcast"] if args.naive else None,
        LIVE_MAX_CONNECTIONS_PER_IP="100000",
        LIVE_ACCEPT_RATE="0",  # the steady state is measured here, not admission
        LIVE_IDLE_TIMEOUT_SECONDS="3600",
        SCORE_DEBOUNCE_MS=args.debounce_ms,
        WEB_CONCURRENCY=args.processes,
        **dict(item.split("=", 1) for item in args.env),
        DB_POOL_MAX="20",
    )
    try:
        processes = None if args.naive else int(args.processes)  # the naive one has no metrics
        result = await run_one(
            server, n, args.rate, args.duration, args.batched, args.profile, processes
        )
    finally:
        server.stop()
    print(" ".join(f"{k}={v}" for k, v in result.items()), flush=True)
    return result


if __name__ == "__main__":
    # the load generator needs the faster loop more than the server: it reads every frame
    uvloop.run(main())
