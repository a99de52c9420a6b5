"""REST load on one instance with wrk (Debian's ``wrk``): prefix lookups cold and warm, votes,
and the vote -> score-visible delay. A ``/health/live`` run in the same process is the
framework's floor (the baseline the other figures are compared with).

    python -m bench.rest_load --videos 100000 --seconds 10 --connections 64 --repeat 3

Uses DATABASE_URL/REDIS_URL when set, else an embedded stack in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
import redis

from bench.harness import ServerProcess, Stack, percentile, stack, start_server

WRK_LATENCY = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def wrk(url: str, *, seconds: int, connections: int, script: str | None = None) -> dict:
    """Run wrk; returns requests/s, p50/p99 ms, non-2xx count and total requests."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        path = Path(tempfile.mkstemp(suffix=".lua")[1])
        path.write_text(script)
        args[1:1] = ["-s", str(path)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    lat = {q: float(v) * unit[u] for q, v, u in WRK_LATENCY.findall(out)}
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": round(lat.get("50", float("nan")), 2),
        "p99_ms": round(lat.get("99", float("nan")), 2),
        "requests": total,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def lua_paths(paths: list[str]) -> str:
    """A wrk script requesting the given paths at random."""
    items = ",".join(f'"{p}"' for p in paths)
    return (
        f"local paths = {{{items}}}\nmath.randomseed(os.time())\n"
        "request = function() return wrk.format('GET', paths[math.random(#paths)]) end\n"
    )


VOTE_LUA = r"""
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
local cats = {"fully_ai", "ai_voiceover", "ai_visuals", "ai_thumbnails", "ai_assisted"}
local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
local hex = "0123456789abcdef"
local function rand(set, n)
  local t = {}
  for i = 1, n do local k = math.random(#set); t[i] = set:sub(k, k) end
  return table.concat(t)
end
request = function()
  local body = '{"videoId":"' .. rand(chars, 11) .. '","category":"' .. cats[math.random(5)]
    .. '","userId":"' .. rand(hex, 64) .. '"}'
  return wrk.format("POST", "/api/votes", {["Content-Type"] = "application/json"}, body)
end
"""


async def seed(database_url: str, videos: int) -> list[str]:
    """Insert ``videos`` voted videos straight into PostgreSQL; returns their hashes."""
    conn = await asyncpg.connect(database_url)
    try:
        ids = [secrets.token_urlsafe(8)[:11] for _ in range(videos)]
        hashes = [hashlib.sha256(v.encode()).hexdigest() for v in ids]
        await conn.execute(
            "INSERT INTO videos (video_id, video_hash, score, total_votes)"
            " SELECT unnest($1::text[]), unnest($2::text[]), 60, 3",
            ids,
            hashes,
        )
        await conn.execute(
            "INSERT INTO video_categories (video_id, category, votes, weighted_score)"
            " SELECT unnest($1::text[]), 'fully_ai', 3, 100",
            ids,
        )
        await conn.execute("ANALYZE")
        return hashes
    finally:
        await conn.close()


async def score_visible_delay(server: ServerProcess, samples: int) -> dict:
    """Post a vote, poll its video until the score worker's result shows (every 2 ms)."""
    delays: list[float] = []
    async with httpx.AsyncClient(base_url=server.url) as client:
        for _ in range(samples):
            video = secrets.token_urlsafe(8)[:11]
            t0 = time.monotonic()
            r = await client.post(
                "/api/votes",
                json={"videoId": video, "category": "fully_ai", "userId": secrets.token_hex(32)},
            )
            r.raise_for_status()
            while True:
                got = await client.get("/api/videos", params={"videoId": video})
                if got.status_code == 200 and got.json()["score"] > 0:
                    break
                await asyncio.sleep(0.002)
            delays.append((time.monotonic() - t0) * 1000)
            await asyncio.sleep(0.05)
    return {"p50_ms": round(percentile(delays, 50), 1), "p99_ms": round(percentile(delays, 99), 1)}


async def one_run(args: argparse.Namespace) -> dict[str, dict]:
    """A fresh stack and instance, the seeded videos, every phase; returns the figures."""
    with stack() as st:
        # one database per run keeps counts exact
        server = start_server(
            st,
            SCORE_DEBOUNCE_MS="20",
            DB_POOL_MAX="20",
            DB_POOL_MIN="10",
            WEB_CONCURRENCY=args.processes,
        )
        try:
            return await phases(st, server, args)
        finally:
            server.stop()


async def phases(st: Stack, server: ServerProcess, args: argparse.Namespace) -> dict[str, dict]:
    """Baseline, cold and warm lookups, votes (checked exact), vote -> score visible."""
    hashes = await seed(st.database_url, args.videos)
    run = lambda url, script=None: wrk(  # noqa: E731
        url, seconds=args.seconds, connections=args.connections, script=script
    )
    results = {"baseline /health/live": run(f"{server.url}/health/live")}
    r = redis.Redis.from_url(st.redis_url)
    for key in r.scan_iter("prefix:*", count=1000):
        r.delete(key)
    cold = [f"/api/videos/{h[:8]}" for h in hashes]
    results["prefix lookup, cold cache"] = run(server.url, lua_paths(cold))
    warm = [f"/api/videos/{h[:5]}" for h in hashes[:500]]
    async with httpx.AsyncClient(base_url=server.url) as client:
        for path in warm:
            await client.get(path)
    results["prefix lookup, warm cache"] = run(server.url, lua_paths(warm))
    conn = await asyncpg.connect(st.database_url)
    before = await conn.fetchval("SELECT count(*) FROM votes")
    started = await conn.fetchval("SELECT now()")
    votes = run(server.url, VOTE_LUA)
    deadline = time.monotonic() + 30
    while await conn.fetchval("SELECT count(*) FROM score_queue") and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    stored = await conn.fetchval("SELECT count(*) FROM votes") - before
    # every bench vote is on a fresh video: their counters must add up to the rows
    counted = await conn.fetchval(
        "SELECT coalesce(sum(total_votes), 0) FROM videos WHERE created_at >= $1", started
    )
    await conn.close()
    # wrk stops with requests in flight: the server may have stored up to one per
    # connection more than wrk counted as answered
    answered = votes["requests"] - votes["non_2xx"]
    votes |= {
        "answered": answered,
        "rows": stored,
        "counter_sum": counted,
        "exact": stored == counted and answered <= stored <= answered + args.connections,
    }
    results["votes"] = votes
    results["vote -> score visible (REST poll)"] = await score_visible_delay(server, args.samples)
    return results


def report(results: dict[str, dict]) -> None:
    base = results["baseline /health/live"]["rps"]
    for name, figures in results.items():
        ratio = f" ({figures['rps'] / base:.0%} of baseline)" if "rps" in figures else ""
        print(f"{name}: {figures}{ratio}", flush=True)


def medians(runs: list[dict[str, dict]]) -> dict[str, dict]:
    """Per phase, the median of every numeric figure; ``exact`` only if every run was."""
    out: dict[str, dict] = {}
    for name, first in runs[0].items():
        out[name] = {
            key: (
                all(r[name][key] for r in runs)
                if isinstance(value, bool)
                else round(statistics.median(r[name][key] for r in runs), 2)
            )
            for key, value in first.items()
        }
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--processes", default="1", help="WEB_CONCURRENCY of the server")
    parser.add_argument("--repeat", type=int, default=1, help="runs (medians printed)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    runs = []
    for i in range(args.repeat):
        runs.append(await one_run(args))
        if args.repeat > 1:
            print(f"run {i + 1}:")
        report(runs[-1])
    if args.repeat > 1:
        print(f"median of {args.repeat} runs:")
        report(medians(runs))


if __name__ == "__main__":
    asyncio.run(main())
