"""The admin topic's aggregation of instance snapshots (pure: no server, no browser)."""

from __future__ import annotations

import math

import pytest

from realtube_push.push.aggregate import Aggregator, histogram_quantile

BOUNDS = ["0.005", "0.01", "0.025", "0.05", "+Inf"]


def snap(instance: str, *, lag: list[float], votes: float = 0, published: float = 0, ws: int = 0):
    return {
        "instance": instance,
        "at": 0.0,
        "uptime": 1.0,
        "connections": {"ws": ws, "sse": 0, "admin": 0},
        "deltasPublished": published,
        "deltasDelivered": published,
        "votes": votes,
        "cacheHits": 1,
        "cacheMisses": 1,
        "fanoutLagBuckets": list(zip(BOUNDS, lag, strict=True)),
        "dbPool": {"inUse": 1, "size": 2, "max": 10},
        "scoreQueue": {"depth": 3, "lagSeconds": 0.5},
    }


def test_quantile_interpolates_within_a_bucket():
    buckets = [(0.01, 50.0), (0.02, 100.0), (math.inf, 100.0)]

    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.015)


def test_quantile_of_nothing_is_none_and_beyond_the_last_bound_is_that_bound():
    assert histogram_quantile(0.5, [(0.01, 0.0), (math.inf, 0.0)]) is None
    assert histogram_quantile(0.99, [(0.01, 1.0), (math.inf, 100.0)]) == 0.01


def test_instances_are_summed_and_published_deltas_counted_once():
    stats = Aggregator().aggregate(
        [
            snap("a", lag=[0, 0, 0, 0, 0], votes=3, published=10, ws=2),
            snap("b", lag=[0, 0, 0, 0, 0], votes=4, published=10, ws=5),
        ],
        now=100.0,
    )

    assert stats["connections"] == {"ws": 7, "sse": 0, "admin": 0, "total": 7}
    assert stats["votes"] == 7
    assert stats["deltasPublished"] == 10  # every instance receives every delta
    assert stats["deltasDelivered"] == 20
    assert (stats["cacheHits"], stats["cacheMisses"]) == (2, 2)
    assert stats["dbPool"] == {"inUse": 2, "size": 4, "max": 20}
    assert stats["scoreWorker"] == {"queueDepth": 3, "lagSeconds": 0.5}
    assert [i["instance"] for i in stats["instances"]] == ["a", "b"]


def test_lag_percentiles_cover_only_the_recent_window():
    aggregator = Aggregator(window=10)
    # 100 slow frames long ago, then 100 fast ones within the window
    aggregator.aggregate([snap("a", lag=[0, 0, 0, 100, 100])], now=0.0)
    aggregator.aggregate([snap("a", lag=[0, 0, 0, 100, 100])], now=20.0)

    stats = aggregator.aggregate([snap("a", lag=[100, 100, 100, 200, 200])], now=25.0)

    assert stats["fanoutLag"]["samples"] == 100
    assert stats["fanoutLag"]["p99Ms"] <= 5.0


def test_a_restarted_instance_does_not_produce_negative_counts():
    aggregator = Aggregator(window=10)
    aggregator.aggregate([snap("a", lag=[50, 50, 50, 50, 50])], now=0.0)

    stats = aggregator.aggregate([snap("a", lag=[1, 1, 1, 1, 1])], now=1.0)

    assert stats["fanoutLag"]["samples"] == 1
