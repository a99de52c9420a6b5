"""Shedding decided from local state (push/admission.py): the token bucket, the ceiling, and
the window a shed client's wait is drawn from. (The per-address slots need Redis: they are
tested with real server processes in tests/integration/test_live_address_cap.py.)"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from realtube_push.cache import Keys
from realtube_push.observability import Metrics, RedisOutage
from realtube_push.push.admission import Admission, Refusal, TokenBucket
from realtube_push.push.slots import AddressSlots

pytestmark = pytest.mark.anyio


def admission(
    *,
    rate: float,
    burst: int,
    ceiling: int = 1000,
    max_retry: int = 60,
    metrics: Metrics | None = None,
    lag: float = 0.0,
    max_lag: float = 0.0,
) -> Admission:
    """An admission whose slots are never reached: every case here is refused before them."""
    metrics = metrics or Metrics()
    slots = AddressSlots(
        Redis.from_url("redis://127.0.0.1:1"),  # never connected to
        Keys(),
        RedisOutage(metrics.redis_failures),
        process="p",
        salt="s",
        cap=10,
        ttl_seconds=30,
    )
    return Admission(
        slots,
        rate=rate,
        burst=burst,
        max_connections=ceiling,
        max_retry_seconds=max_retry,
        metrics=metrics,
        lag=lambda: lag,
        max_lag_seconds=max_lag,
    )


def test_a_bucket_admits_its_burst_then_waits_for_the_rate():
    bucket = TokenBucket(rate=0.001, burst=3)
    assert [bucket.take() for _ in range(5)] == [True, True, True, False, False]
    bucket.give_back()
    assert bucket.take()
    assert not bucket.take()


def test_a_rate_of_zero_never_sheds():
    bucket = TokenBucket(rate=0, burst=1)
    assert all(bucket.take() for _ in range(10_000))


async def test_past_the_burst_handshakes_are_shed_for_rate():
    metrics = Metrics()
    door = admission(rate=0.001, burst=1, metrics=metrics)
    door.bucket.take()  # the burst is spent
    refusal = await door.admit("192.0.2.1")
    assert refusal is not None
    assert refusal.reason == "rate"
    assert 1000 <= refusal.retry_after_ms <= 2000  # one refusal: the shortest window
    shed = metrics.registry.get_sample_value(
        "realtube_live_handshakes_shed_total", {"reason": "rate"}
    )
    assert shed == 1


async def test_past_the_ceiling_handshakes_are_shed_for_ceiling():
    door = admission(rate=0, burst=1, ceiling=2)
    door.slots.total = 2  # two connections held
    refusal = await door.admit("192.0.2.1")
    assert refusal is not None
    assert refusal.reason == "ceiling"


async def test_the_window_grows_with_the_herd_and_stops_at_its_cap():
    door = admission(rate=10, burst=1, max_retry=30)
    door.bucket.take()
    waits = [(await door.admit("192.0.2.1")) for _ in range(400)]
    assert door.window() == 30  # ~400 refused within a second, 10 a second admitted: capped
    ms = [w.retry_after_ms for w in waits if w is not None]
    assert len(ms) >= 390
    assert min(ms) >= 1000
    assert max(ms) <= 30_000
    assert max(ms) > 10_000  # later refusals are spread over a longer window
    assert len({m // 1000 for m in ms}) > 10


@pytest.mark.parametrize(("ms", "seconds"), [(1000, 1), (1400, 1), (1600, 2), (29_900, 30)])
def test_retry_after_is_the_wait_in_whole_seconds(ms, seconds):
    assert Refusal("rate", ms).retry_after == seconds


async def test_while_the_fan_out_lags_past_the_limit_handshakes_are_shed_for_lag():
    metrics = Metrics()
    door = admission(rate=0, burst=1, metrics=metrics, lag=1.5, max_lag=1.0)
    refusal = await door.admit("192.0.2.1")
    assert refusal is not None
    assert refusal.reason == "lag"
    assert refusal.retry_after_ms >= 1000
    shed = metrics.registry.get_sample_value(
        "realtube_live_handshakes_shed_total", {"reason": "lag"}
    )
    assert shed == 1


@pytest.mark.parametrize(("lag", "max_lag"), [(0.5, 1.0), (30.0, 0.0)])
async def test_a_lag_within_the_limit_or_no_limit_is_no_reason_to_shed(lag, max_lag):
    # the bucket is empty: a handshake that passes the lag test is shed for the rate instead
    door = admission(rate=0.001, burst=1, lag=lag, max_lag=max_lag)
    door.bucket.take()
    refusal = await door.admit("192.0.2.1")
    assert refusal is not None
    assert refusal.reason == "rate"
