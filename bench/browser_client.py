"""Measure the JS client (``clients/js/realtube-live.js``) in headless Chromium.

    python bench/browser_client.py [--videos 100000] [--rounds 3] [--out docs/benchmarks-browser.md]

What it does: a fresh database gets ``--videos`` flagged videos (and a few thousand channels)
by SQL, a real server serves them, and each round opens a fresh browser context whose client
full-syncs them into IndexedDB. Then, in the page:

- lookup: ``client.lookup(50 ids, {remote: 'never'})`` (25 cached, 25 not), timed with
  ``performance.now()``, 50 times per round;
- deltas: ``client.applyFrame(frame)`` of a frame with 1,000 video updates (one IndexedDB
  transaction, cursor included), 10 times per round;
- memory: the page's JS heap (CDP ``Performance.getMetrics`` ``JSHeapUsedSize``, after a forced
  GC) before the client starts and with the full cache loaded, its peak during the full sync
  (``performance.memory`` sampled every 10 ms, with ``--enable-precise-memory-info``), and the
  IndexedDB footprint (``navigator.storage.estimate()``);
- full sync: wall time of ``start()`` (download, parse and store of the whole dataset).

Each figure is the median over rounds (of the per-round medians); the file names the machine.
Uses the embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL are set; needs
``/usr/bin/chromium`` (Debian's ``chromium``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg

REPO = Path(__file__).resolve().parents[1]
LOAD_AT_START = os.getloadavg()[0]
sys.path.insert(0, str(REPO))

from realtube_push.store import db  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.browser.jsclient import open_page  # noqa: E402
from tests.support.blocking import SERVER_ENV  # noqa: E402
from tests.support.databases import database_url_for  # noqa: E402
from tests.support.servers import ServerFactory  # noqa: E402

FILL_SQL = """
WITH v AS (
    SELECT 'bv' || lpad(to_hex(i), 9, '0') AS video_id, i
    FROM generate_series(1, $1) AS i
)
INSERT INTO videos (video_id, video_hash, channel_id, score, total_votes, locked)
SELECT video_id, encode(sha256(convert_to(video_id, 'UTF8')), 'hex'),
       'UCbench' || (i % $2), 50 + (i % 50), 3 + (i % 20), i % 97 = 0
FROM v
"""
FILL_CATEGORIES_SQL = """
INSERT INTO video_categories (video_id, category, votes, weighted_score)
SELECT video_id, (ARRAY['fully_ai', 'ai_voiceover', 'ai_visuals'])[1 + (hashtext(video_id) & 1)],
       total_votes, score
FROM videos
"""
FILL_CHANNELS_SQL = """
INSERT INTO channels (channel_id, channel_hash, score, total_videos, flagged_videos,
                      top_categories, auto_flag_new)
SELECT 'UCbench' || i, encode(sha256(convert_to('UCbench' || i, 'UTF8')), 'hex'),
       60 + (i % 40), 40, 30, ARRAY['fully_ai'], i % 2 = 0
FROM generate_series(0, $1 - 1) AS i
"""

START_JS = """async (opts) => {
  const { RealTubeLive } = await import('/client/realtube-live.js');
  const client = new RealTubeLive(opts);
  window.client = client;
  let peak = performance.memory.usedJSHeapSize;
  const sampler = setInterval(() => {
    peak = Math.max(peak, performance.memory.usedJSHeapSize);
  }, 10);
  const t0 = performance.now();
  await client.start();
  const ms = performance.now() - t0;
  clearInterval(sampler);
  return { ms, peak, counts: await client.counts() };
}"""

LOOKUP_JS = """async ([known, runs]) => {
  const unknown = Array.from({ length: 25 }, (_, i) => `zz${i}missing`);
  const timings = [];
  for (let r = 0; r < runs; r += 1) {
    const ids = [];
    for (let i = 0; i < 25; i += 1) ids.push(known[(r * 25 + i) % known.length], unknown[i]);
    const t0 = performance.now();
    const found = await window.client.lookup(ids, { remote: 'never' });
    timings.push(performance.now() - t0);
    if (found.size !== 50) throw new Error('lookup lost ids');
  }
  return timings;
}"""

DELTAS_JS = """async ([known, runs]) => {
  const timings = [];
  for (let r = 0; r < runs; r += 1) {
    const state = window.client.syncState;
    const from = state.seq + 1;
    const videos = [];
    for (let i = 0; i < 1000; i += 1) {
      videos.push({
        seq: from + i, videoId: known[(r * 1000 + i) % known.length], action: 'update',
        score: 50 + ((r + i) % 50), categories: { fully_ai: { votes: 5, weightedScore: 90 } },
        channelId: 'UCbench1', locked: false, totalVotes: 5, lastUpdated: new Date().toISOString(),
      });
    }
    const frame = { epoch: state.epoch, from, to: from + 999, videos, channels: [] };
    const t0 = performance.now();
    const applied = await window.client.applyFrame(frame, 'bench');
    timings.push(performance.now() - t0);
    if (applied !== 1000) throw new Error(`applied ${applied}`);
  }
  return timings;
}"""


@contextlib.contextmanager
def stack_urls(tmp: Path) -> Iterator[tuple[str, str]]:
    """(admin database URL, Redis URL): the environment's, else an embedded stack."""
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        yield os.environ["DATABASE_URL"], os.environ["REDIS_URL"]
        return
    from realtube_push.devstack import embedded_stack

    with embedded_stack(tmp) as stack:
        yield stack.admin_database_url, stack.redis_url


async def make_database(admin_url: str, videos: int, channels: int) -> str:
    """A fresh migrated database filled with ``videos`` flagged videos; returns its URL."""
    name = f"rt_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = database_url_for(admin_url, name)
    conn = await asyncpg.connect(url)
    try:
        await db.apply_migrations(conn)
        await conn.execute(FILL_SQL, videos, channels)
        await conn.execute(FILL_CATEGORIES_SQL)
        await conn.execute(FILL_CHANNELS_SQL, channels)
    finally:
        await conn.close()
    return url


async def drop_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1].split("?")[0]
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def heap_used(cdp: object) -> int:
    """JS heap in use after a forced garbage collection (bytes)."""
    cdp.send("HeapProfiler.collectGarbage")  # type: ignore[attr-defined]
    metrics = cdp.send("Performance.getMetrics")["metrics"]  # type: ignore[attr-defined]
    return int(next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize"))


def one_round(browser: object, url: str, known: list[str]) -> dict[str, object]:
    """A fresh profile: full sync, then lookups, delta batches and memory."""
    context = browser.new_context()  # type: ignore[attr-defined]
    try:
        page = context.new_page()
        page.set_default_timeout(600_000)
        open_page(page, url)
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        page.evaluate("import('/client/realtube-live.js')")
        heap_before = heap_used(cdp)
        started = page.evaluate(
            START_JS,
            {"userId": "ab" * 32, "transports": ["poll"], "deltaIntervalMs": 3_600_000},
        )
        heap_after = heap_used(cdp)
        storage = page.evaluate("navigator.storage.estimate().then((e) => e.usage)")
        lookups = page.evaluate(LOOKUP_JS, [known, 50])
        deltas = page.evaluate(DELTAS_JS, [known, 10])
        return {
            "full_sync_ms": started["ms"],
            "videos": started["counts"]["videos"],
            "channels": started["counts"]["channels"],
            "heap_before": heap_before,
            "heap_after": heap_after,
            "heap_peak": started["peak"],
            "idb_bytes": storage,
            "lookup_ms": statistics.median(lookups),
            "lookup_p95_ms": sorted(lookups)[int(len(lookups) * 0.95) - 1],
            "deltas_ms": statistics.median(deltas),
            "deltas_max_ms": max(deltas),
        }
    finally:
        context.close()


def chromium_version() -> str:
    try:
        return subprocess.run(
            [str(CHROMIUM), "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except OSError:
        return "unknown"


def report(rounds: list[dict[str, object]], videos: int, channels: int) -> str:
    """The markdown for docs/benchmarks-browser.md."""

    def med(key: str) -> float:
        return statistics.median(float(r[key]) for r in rounds)  # type: ignore[arg-type]

    mib = 1024 * 1024
    heap_growth = med("heap_after") - med("heap_before")
    lines = [
        "# Browser client benchmarks",
        "",
        "The JS client (`clients/js/realtube-live.js`) measured in headless Chromium by",
        "`bench/browser_client.py` against a real server (embedded PostgreSQL and Redis).",
        f"Dataset: {videos:,} flagged videos and {channels:,} channels, full-synced into a",
        "fresh IndexedDB each round; every figure is the median of "
        f"{len(rounds)} rounds (each round's",
        "lookup and delta figures are themselves medians of 50 and 10 runs).",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, {chromium_version()}, headless;"
        f" load average {LOAD_AT_START:.1f} when the run started (server, database and browser",
        "share the cores).",
        "",
        "| what | result | target |",
        "|---|---|---|",
        f"| cache lookup of 50 ids (25 cached, 25 not; one IndexedDB transaction) | "
        f"{med('lookup_ms'):.2f} ms (p95 {med('lookup_p95_ms'):.2f} ms) | < 5 ms |",
        f"| applying 1,000 deltas (one frame, one transaction with the cursor) | "
        f"{med('deltas_ms'):.1f} ms (slowest run {med('deltas_max_ms'):.1f} ms) | |",
        f"| full sync of {videos:,} videos (download, parse, store) | "
        f"{med('full_sync_ms') / 1000:.2f} s | |",
        f"| JS heap with the {videos:,}-video cache loaded (after GC) | "
        f"{med('heap_after') / mib:.1f} MiB ({heap_growth / mib:+.1f} MiB over the page "
        f"before start, {med('heap_before') / mib:.1f} MiB) | |",
        f"| JS heap peak during that full sync (`performance.memory`, sampled every 10 ms) | "
        f"{med('heap_peak') / mib:.1f} MiB | |",
        f"| IndexedDB footprint of that cache (`navigator.storage.estimate`) | "
        f"{med('idb_bytes') / mib:.1f} MiB | |",
        "",
        "The cache lives in IndexedDB, not in JS objects: the heap holds the module and the",
        "page, so its size does not grow with the number of cached videos once the full-sync",
        "document has been stored and collected. Reproduce with",
        "`python bench/browser_client.py --out docs/benchmarks-browser.md`.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--channels", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="rt-bench-") as tmp, stack_urls(Path(tmp)) as urls:
        admin_url, redis_url = urls
        t0 = time.perf_counter()
        url = asyncio.run(make_database(admin_url, args.videos, args.channels))
        print(f"database filled in {time.perf_counter() - t0:.1f} s", flush=True)
        factory = ServerFactory(database_url=url, redis_url=redis_url)
        try:
            server = factory.start(**SERVER_ENV)
            known = [f"bv{i:09x}" for i in range(1, args.videos + 1, 7)]
            rounds = []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM),
                    headless=True,
                    args=[*CHROMIUM_ARGS, "--enable-precise-memory-info"],
                )
                try:
                    for n in range(args.rounds):
                        result = one_round(browser, server.url, known)
                        print(f"round {n + 1}: {result}", flush=True)
                        rounds.append(result)
                finally:
                    browser.close()
        finally:
            factory.stop_all()
            asyncio.run(drop_database(admin_url, url))
    text = report(rounds, args.videos, args.channels)
    print(text)
    if args.out is not None:
        # bench/extension.py owns the section from its marker on: keep it
        old = args.out.read_text() if args.out.exists() else ""
        marker = old.find("<!-- extension benchmarks: begin")
        args.out.write_text(text + ("\n" + old[marker:] if marker >= 0 else ""))
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
