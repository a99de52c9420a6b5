"""/health/live, /health/ready and /metrics as operators and load balancers see them."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support import ids, pg
from tests.support.api import vote
from tests.support.live import full_sync, metric, sse_subscriber, ws_subscriber
from tests.support.polling import eventually
from tests.support.redis_server import own_redis

pytestmark = pytest.mark.anyio

# The service's metrics (realtube_push/observability.py), by the names dashboards query.
DASHBOARD_METRICS = (
    "realtube_http_requests_total",
    "realtube_http_request_duration_seconds",
    "realtube_votes_total",
    "realtube_cache_requests_total",
    "realtube_score_queue_depth",
    "realtube_db_pool_connections",
)


async def test_live_says_ok(client):
    r = await client.get("/health/live")

    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_ready_is_healthy_with_each_dependency_checked(client):
    r = await client.get("/health/ready")

    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy"
    for dependency in ("database", "redis"):
        assert body["checks"][dependency]["status"] == "up"
        assert body["checks"][dependency]["latency_ms"] >= 0
    assert body["uptime_seconds"] >= 0
    assert body["version"]


async def test_ready_reports_when_the_score_worker_last_ran(client):
    async def worker_check() -> dict | None:
        check = (await client.get("/health/ready")).json()["checks"]["score_worker"]
        return check if check["status"] == "running" else None

    check = await eventually(worker_check, what="score worker running")

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", check["last_run"])


async def test_metrics_expose_the_dashboard_metrics_in_prometheus_text(client):
    r = await client.get("/metrics")

    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    for name in DASHBOARD_METRICS:
        assert f"# TYPE {name} " in r.text, name


async def test_metrics_count_applied_votes(client):
    def applied(text: str) -> float:
        match = re.search(r'^realtube_votes_total\{applied="true"\} (\S+)$', text, re.M)
        return float(match.group(1)) if match else 0.0

    before = applied((await client.get("/metrics")).text)
    await vote(client, ids.video_id())
    await vote(client, ids.video_id())

    after = applied((await client.get("/metrics")).text)

    assert after == before + 2


async def test_metrics_count_the_fan_outs_own_cpu_while_frames_go_out(client, server):
    """The fan-out's CPU beside the frames it wrote: what docs/benchmarks.md compares with a
    bare socket write, and operators with the process's whole CPU."""
    cpu, frames = "realtube_live_fanout_cpu_seconds_total", "realtube_live_frames_sent_total"
    cpu_before, frames_before = await metric(server.url, cpu), await metric(server.url, frames)
    async with ws_subscriber(server.url) as sub:
        await sub.until_frame("welcome")
        video = ids.video_id()
        await vote(client, video)
        await sub.wait_for(
            lambda: any(d["videoId"] == video for d in sub.video_deltas), what="the vote's delta"
        )

    assert await metric(server.url, frames) > frames_before
    fanout = await metric(server.url, cpu)
    assert fanout > cpu_before
    assert fanout < await metric(server.url, "process_cpu_seconds_total")  # a part of it


async def test_each_server_process_names_itself_in_its_metrics(servers):
    """With WEB_CONCURRENCY=2 a scrape reaches one process or the other (the kernel picks,
    per connection): ``realtube_instance_info`` says which, so the two can be told apart."""
    server = servers.start(WEB_CONCURRENCY="2")
    seen: set[str] = set()
    for _ in range(200):  # each scrape on a new connection, until both processes answered
        async with httpx.AsyncClient(base_url=server.url) as fresh:
            text = (await fresh.get("/metrics")).text
        seen.update(re.findall(r'^realtube_instance_info\{instance="([^"]+)"\} 1\.0$', text, re.M))
        if len(seen) == 2:
            break

    assert len(seen) == 2, seen


@pytest.fixture
def redis_of_our_own(tmp_path):
    with own_redis(tmp_path) as redis:
        yield redis


async def test_ready_stays_200_degraded_while_redis_is_down_and_votes_and_live_deltas_go_on(
    servers, redis_of_our_own
):
    server = servers.start(REDIS_URL=redis_of_our_own.url)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        assert (await client.get("/health/ready")).json()["status"] == "healthy"
        async with sse_subscriber(server.url, await full_sync(client)) as live:
            await live.until_frame("welcome")
            redis_of_our_own.stop()

            r = await client.get("/health/ready")
            video = ids.video_id()
            await vote(client, video)

            await live.wait_for(lambda: video in live.dataset.videos, within=15, what=video)
        metrics = (await client.get("/metrics")).text

    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"]["status"] == "down"
    assert "served from PostgreSQL" in body["checks"]["redis"]["impact"]
    assert body["checks"]["database"]["status"] == "up"
    assert 'realtube_dependency_up{dependency="redis"} 0.0' in metrics


async def test_ready_is_503_unhealthy_when_the_database_is_down(servers, stack, database_url):
    server = servers.start()
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/health/ready")).status_code == 200
        await pg.take_database_away(stack.admin_database_url, database_url)

        r = await client.get("/health/ready")

    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["database"]["status"] == "down"
    assert body["checks"]["redis"]["status"] == "up"
