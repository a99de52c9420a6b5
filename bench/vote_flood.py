"""Vote flood: thousands of users flush their offline vote queues within a second or two,
against a server committing each vote alone (``single``) and one batching them (``batched``,
``VOTE_BATCH_MS``), side by side in the same run.

    python -m bench.vote_flood --users 2000 --votes-per-user 3 --repeat 3

Each user is a connection from a loopback address of its own (``--users-per-address`` share
one; the app's rate limits stay on and are never what is measured), starts within
``--spread`` seconds and sends its queue oldest cast first, with past timestamps (an outage
ending); some users changed their mind on a video, some have a stale vote from another device
that must not be applied. A connection that fails (the server's listen queue overflowing is
the usual reason at thousands of connects a second) is retried as the JS client retries its
vote queue (full jitter, 0.5 s doubling) for up to ``--retry-for`` seconds. Every run gets a
fresh database and server; the modes of one repeat flood with the same users and votes.

Printed per run, then as a markdown table of medians: votes/s (acknowledged votes over the
time from the first send to the last reply), reply p50/p99, server and PostgreSQL CPU per
vote (from the flood's start until the last score shows: scoring included), write
transactions and WAL flushes per vote, score lag (last vote acknowledged -> its score visible
through the API; and the oldest queued video's age during the flood), 5xx, votes never
acknowledged, failed connections (retried) by kind, and whether every
count in PostgreSQL is exact (rows, last-write-wins, applied flags, every counter, every
stored score against ``score_video``). ``--modes single batched single-nosync`` adds a
diagnostic run with ``synchronous_commit = off`` (not durable): if it is much faster than
``single``, commits (WAL flushes) are the limit. A run waits 2 x 11 s for PostgreSQL's WAL
statistics. Uses DATABASE_URL/REDIS_URL when set (the role must be allowed to create
databases and set ``track_wal_io_timing``), else an embedded stack in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import secrets
import statistics
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import uvloop

from bench.flood_client import QueuedVote, Reply, User, flush_queue, source_address
from bench.harness import (
    ServerProcess,
    Stack,
    cpu_seconds,
    percentile,
    raise_fd_limit,
    start_server,
)
from bench.harness import stack as bench_stack
from realtube_push.domain.categories import CATEGORIES
from realtube_push.domain.scoring import CastVote, score_video
from realtube_push.store import db

STATS_SETTLE = 11.0  # s: PostgreSQL backends report WAL statistics within 10 s of going idle
MODES = {
    "single": {"VOTE_BATCH_MS": "0"},
    "batched": {},  # VOTE_BATCH_MS from --window-ms
    "single-nosync": {"VOTE_BATCH_MS": "0"},
}


def workload(args: argparse.Namespace, rng: random.Random) -> list[User]:
    """Users, their source addresses, start offsets and vote queues (oldest cast first)."""
    now = datetime.now(UTC)
    videos = [secrets.token_urlsafe(8)[:11] for _ in range(args.videos)]
    users = []
    for i in range(args.users):
        picks = rng.sample(range(args.videos), args.votes_per_user)
        # popular videos get more votes: index ~ videos * u^2
        picks = [int(args.videos * (p / args.videos) ** 2) for p in picks]
        picks = list(dict.fromkeys(picks))
        times = sorted(now - timedelta(seconds=rng.uniform(60, 3600)) for _ in picks)
        queue = [
            QueuedVote(videos[p], rng.choice(CATEGORIES), t)
            for p, t in zip(picks, times, strict=True)
        ]
        if rng.random() < args.changes:  # changed their mind later on: applied
            first = queue[0]
            queue.append(QueuedVote(first.video_id, _other(first.category, rng), now))
        if rng.random() < args.stale:  # an older vote from another device: not applied
            last = queue[-1]
            queue.append(
                QueuedVote(
                    last.video_id, _other(last.category, rng), last.cast_at - timedelta(hours=2)
                )
            )
        address = source_address(i // args.users_per_address)
        users.append(User(secrets.token_hex(32), address, rng.uniform(0, args.spread), queue))
    return users


def _other(category: str, rng: random.Random) -> str:
    return rng.choice([c for c in CATEGORIES if c != category])


def database_url_for(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def fresh_database(st: Stack, name: str, *, nosync: bool) -> str:
    """A new migrated database; ``nosync``: its sessions commit without waiting for WAL."""
    admin = await asyncpg.connect(st.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.execute(f'ALTER DATABASE "{name}" SET track_wal_io_timing = on')
        if nosync:
            await admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    finally:
        await admin.close()
    url = database_url_for(st.database_url, name)
    conn = await asyncpg.connect(url)
    try:
        await db.apply_migrations(conn)
    finally:
        await conn.close()
    return url


async def drop_database(st: Stack, name: str) -> None:
    admin = await asyncpg.connect(st.database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


class PostgresMeter:
    """PostgreSQL's CPU (postmaster, its live children and the reaped ones), write
    transactions (transaction ids assigned) and WAL flushes, read before and after a phase."""

    def __init__(self, conn: asyncpg.Connection, postmaster: int | None) -> None:
        self.conn, self.postmaster = conn, postmaster

    @classmethod
    async def open(cls, url: str) -> PostgresMeter:
        conn = await asyncpg.connect(url)
        return cls(conn, _parent(await conn.fetchval("SELECT pg_backend_pid()")))

    def cpu(self) -> float:
        if self.postmaster is None:
            return float("nan")
        own = Path(f"/proc/{self.postmaster}/stat").read_text().rsplit(")", 1)[1].split()
        reaped = (int(own[13]) + int(own[14])) / _ticks()
        return cpu_seconds(self.postmaster) + reaped

    async def transactions(self) -> int:
        """Transaction ids assigned so far (one per transaction that wrote)."""
        return int(await self.conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text"))

    async def wal(self) -> tuple[float, float]:
        """WAL flushes and ms spent in them, cluster-wide. Backends report these when idle
        (at the latest 10 s after their last transaction): read after a quiet 11 s."""
        row = await self.conn.fetchrow("SELECT wal_sync, wal_sync_time FROM pg_stat_wal")
        return float(row["wal_sync"]), float(row["wal_sync_time"])


def _parent(pid: int) -> int | None:
    """The parent of a local process (a backend's postmaster); None when PostgreSQL is remote."""
    stat = Path(f"/proc/{pid}/stat")
    return int(stat.read_text().rsplit(")", 1)[1].split()[1]) if stat.exists() else None


def _ticks() -> float:
    import os

    return float(os.sysconf("SC_CLK_TCK"))


async def score_lag(server: ServerProcess, conn: asyncpg.Connection, last: Reply) -> float:
    """Seconds from the last acknowledgement until the queue is drained and its video's
    stored score is what the API shows (polled every 20 ms)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if not await conn.fetchval("SELECT count(*) FROM score_queue"):
                stored = await conn.fetchval(
                    "SELECT score FROM videos WHERE video_id = $1", last.vote.video_id
                )
                got = await client.get("/api/videos", params={"videoId": last.vote.video_id})
                if got.status_code == 200 and got.json()["score"] == round(stored, 1):
                    return time.monotonic() - last.acked_at
            await asyncio.sleep(0.02)
    return float("nan")


async def sample_queue_age(url: str, stop: asyncio.Event) -> float:
    """The largest age (s) of the oldest queued video, sampled every 100 ms until ``stop``."""
    worst = 0.0
    conn = await asyncpg.connect(url)
    while not stop.is_set():
        age = await conn.fetchval(
            "SELECT extract(epoch FROM now() - min(enqueued_at)) FROM score_queue"
        )
        worst = max(worst, float(age or 0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
    await conn.close()
    return worst


async def verify(conn: asyncpg.Connection, users: list[User], replies: list[Reply]) -> dict:
    """Mismatches between PostgreSQL and what the acknowledged votes imply (all 0 = exact)."""
    reply_of = {id(r.vote): r for r in replies}
    expected: dict[tuple[str, str], tuple[datetime, str]] = {}
    wrong_applied = 0
    for user in users:
        for vote in user.votes:  # one user's votes arrive in queue order
            reply = reply_of[id(vote)]
            if reply.status != 200:
                continue
            key = (vote.video_id, user.user_id)
            applies = key not in expected or expected[key][0] <= vote.cast_at
            wrong_applied += reply.body.get("applied") is not applies
            if applies:
                expected[key] = (vote.cast_at, vote.category)
    stored = {
        (r["video_id"], r["user_id"]): r["category"]
        for r in await conn.fetch("SELECT video_id, user_id, category FROM votes")
    }
    acked = sum(1 for r in replies if r.status == 200)
    counters = await conn.fetchrow(
        """
        SELECT
          (SELECT count(*) FROM videos v WHERE total_votes <>
             (SELECT count(*) FROM votes WHERE video_id = v.video_id)) AS videos,
          (SELECT count(*) FROM (SELECT video_id, category, count(*) AS n FROM votes
             GROUP BY 1, 2) g FULL JOIN (SELECT * FROM video_categories WHERE votes <> 0) c
             USING (video_id, category) WHERE g.n IS DISTINCT FROM c.votes) AS categories,
          (SELECT count(*) FROM users u WHERE total_votes <>
             (SELECT count(*) FROM votes WHERE user_id = u.user_id)) AS users,
          (SELECT coalesce(sum(votes), 0) FROM ip_hashes) AS ip_votes
        """
    )
    return {
        "rows": len(stored) - len(expected),
        "categories_of_votes": sum(stored.get(k) != v[1] for k, v in expected.items()),
        "applied_flags": wrong_applied,
        "video_counters": counters["videos"],
        "category_counters": counters["categories"],
        "user_counters": counters["users"],
        "ip_hash_votes": counters["ip_votes"] - acked,
        "scores": await wrong_scores(conn),
    }


async def wrong_scores(conn: asyncpg.Connection) -> int:
    """Videos whose stored score is not ``score_video`` over their stored votes."""
    votes: dict[str, list[CastVote]] = {}
    for r in await conn.fetch(
        "SELECT v.video_id, v.category, v.weight, v.vip, u.is_shadowbanned"
        " FROM votes v JOIN users u USING (user_id)"
    ):
        weight = 0.0 if r["is_shadowbanned"] else r["weight"]
        votes.setdefault(r["video_id"], []).append(CastVote(r["category"], weight, r["vip"]))
    wrong = 0
    for r in await conn.fetch("SELECT video_id, score, locked, preliminary FROM videos"):
        result = score_video(
            votes.get(r["video_id"], []),
            locked=r["locked"],
            current_score=r["score"],
            preliminary=r["preliminary"],
        )
        wrong += result.score != r["score"]
    return wrong


async def one_run(st: Stack, mode: str, run: int, args: argparse.Namespace) -> dict:
    """A fresh database and server in ``mode``, one flood; returns the figures."""
    rng = random.Random(args.seed + run)  # the same users for every mode of a run
    users = workload(args, rng)
    name = f"rt_flood_{mode.replace('-', '_')}_{run}_{secrets.token_hex(3)}"
    url = await fresh_database(st, name, nosync=mode == "single-nosync")
    env = {
        **MODES[mode],
        "DATABASE_URL": url,
        "REDIS_NAMESPACE": name,
        "RATE_LIMITS_ENABLED": "true",
        "WEB_CONCURRENCY": args.processes,
        "SCORE_DEBOUNCE_MS": args.debounce_ms,
    }
    if mode == "batched":
        env["VOTE_BATCH_MS"] = args.window_ms
    server = start_server(Stack(url, st.redis_url), **env)
    meter = await PostgresMeter.open(url)
    sampler = await asyncpg.connect(url)
    try:
        port = server.port
        replies: list[Reply] = []
        stop = asyncio.Event()
        ages = asyncio.create_task(sample_queue_age(url, stop))
        await asyncio.sleep(STATS_SETTLE)  # the start-up's WAL statistics reported
        before = {"server": cpu_seconds(server.process.pid), "pg": meter.cpu()}
        xids, wal = await meter.transactions(), await meter.wal()
        own = time.process_time()
        t0 = time.monotonic()
        failures: Counter[str] = Counter()
        await asyncio.gather(
            *(
                flush_queue("127.0.0.1", port, u, t0, replies, failures, retry_for=args.retry_for)
                for u in users
            )
        )
        load_cpu = time.process_time() - own
        acked = [r for r in replies if r.status == 200]
        if not acked:
            raise RuntimeError(f"no vote was acknowledged: {Counter(r.status for r in replies)}")
        last = max(acked, key=lambda r: r.acked_at)
        lag = await score_lag(server, sampler, last)
        # the flood's whole cost: the votes and their scoring, up to the last score shown
        cpu = {"server": cpu_seconds(server.process.pid), "pg": meter.cpu()}
        xids = await meter.transactions() - xids
        stop.set()
        worst_age = await ages
        checks = await verify(sampler, users, replies)
        await asyncio.sleep(max(0.0, last.acked_at + STATS_SETTLE - time.monotonic()))
        flushes, flush_ms = (a - b for a, b in zip(await meter.wal(), wal, strict=True))
    finally:
        await meter.conn.close()
        await sampler.close()
        server.stop()
        await drop_database(st, name)
    first_sent = min(r.acked_at - r.seconds for r in acked)
    statuses = Counter(r.status for r in replies)
    n = len(acked)
    latencies = [r.seconds * 1000 for r in acked]
    return {
        "mode": mode,
        "votes": n,
        "votes_per_s": round(n / (last.acked_at - first_sent), 1),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "server_cpu_ms_per_vote": round((cpu["server"] - before["server"]) * 1000 / n, 3),
        "pg_cpu_ms_per_vote": round((cpu["pg"] - before["pg"]) * 1000 / n, 3),
        "write_transactions_per_vote": round(xids / n, 3),
        "wal_flushes_per_vote": round(flushes / n, 3),
        "wal_flush_ms_per_vote": round(flush_ms / n, 3),
        "score_lag_ms": round(lag * 1000, 1),
        "max_queue_age_ms": round(worst_age * 1000, 1),
        "http_5xx": sum(c for s, c in statuses.items() if s >= 500),
        "other_failures": sum(c for s, c in statuses.items() if s != 200 and s < 500),
        # connections that failed and were retried (the client's backoff), by how they failed
        "failed_attempts": sum(failures.values()),
        "failed_attempts_by_kind": dict(failures),
        "exact": not any(checks.values()),
        "mismatches": {k: v for k, v in checks.items() if v},
        "load_generator_cpu_s": round(load_cpu, 2),
    }


ROWS = [
    ("votes/s", "votes_per_s"),
    ("reply p50 / p99 (ms)", ("p50_ms", "p99_ms")),
    ("server CPU per vote (ms)", "server_cpu_ms_per_vote"),
    ("PostgreSQL CPU per vote (ms)", "pg_cpu_ms_per_vote"),
    ("write transactions per vote (score worker's included)", "write_transactions_per_vote"),
    ("WAL flushes per vote; flush ms per vote", ("wal_flushes_per_vote", "wal_flush_ms_per_vote")),
    ("score lag after the last reply (ms)", "score_lag_ms"),
    ("oldest queued video during the flood (ms)", "max_queue_age_ms"),
    ("5xx; other failures", ("http_5xx", "other_failures")),
    ("failed connections, retried", "failed_attempts"),
]


def summary(runs: list[dict], modes: list[str]) -> str:
    """A markdown table: medians per mode, then every run's votes/s."""
    lines = ["| median of runs | " + " | ".join(modes) + " |", "|---" * (len(modes) + 1) + "|"]
    by_mode = {m: [r for r in runs if r["mode"] == m] for m in modes}
    for label, keys in ROWS:
        cells = []
        for mode in modes:
            values = [
                str(round(statistics.median(r[k] for r in by_mode[mode]), 3))
                for k in (keys if isinstance(keys, tuple) else (keys,))
            ]
            cells.append(" / ".join(values))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    exact = ["yes" if all(r["exact"] for r in by_mode[m]) else "**no**" for m in modes]
    lines.append("| counts exact in every run | " + " | ".join(exact) + " |")
    each = [", ".join(str(r["votes_per_s"]) for r in by_mode[m]) for m in modes]
    lines.append("| votes/s of each run | " + " | ".join(each) + " |")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--votes-per-user", type=int, default=3)
    parser.add_argument("--videos", type=int, default=1000, help="distinct videos voted on")
    parser.add_argument("--spread", type=float, default=1.0, help="s over which users start")
    parser.add_argument("--users-per-address", type=int, default=4)
    parser.add_argument("--changes", type=float, default=0.1, help="share changing a vote")
    parser.add_argument("--stale", type=float, default=0.05, help="share with a stale vote")
    parser.add_argument("--modes", nargs="+", default=["single", "batched"], choices=MODES)
    parser.add_argument("--window-ms", default="5", help="VOTE_BATCH_MS of the batched mode")
    parser.add_argument("--processes", default="1", help="WEB_CONCURRENCY of the server")
    parser.add_argument("--debounce-ms", default="100", help="SCORE_DEBOUNCE_MS")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--retry-for", type=float, default=300.0, help="s a user retries a failed connection"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    raise_fd_limit()
    runs = []
    with bench_stack() as st:
        for run in range(args.repeat):
            for mode in args.modes:
                result = await one_run(st, mode, run, args)
                print(" ".join(f"{k}={v}" for k, v in result.items()), flush=True)
                runs.append(result)
    print()
    print(summary(runs, args.modes))


if __name__ == "__main__":
    uvloop.run(main())
