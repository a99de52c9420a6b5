"""The window a herd's delays are drawn over grows with the herd, within its bounds."""

from __future__ import annotations

from realtube_push.push.herd import HerdSpread


def test_the_window_is_connections_over_rate_between_its_bounds() -> None:
    spread = HerdSpread(rate=500, min_ms=1000, max_ms=30_000)
    assert spread.window_ms(1) == 1000  # a lone client: the shortest window
    assert spread.window_ms(2_000) == 4000
    assert spread.window_ms(10_000) == 20_000
    assert spread.window_ms(1_000_000) == 30_000


def test_each_draw_is_fresh_and_within_the_window() -> None:
    spread = HerdSpread(rate=100, min_ms=0, max_ms=60_000)
    delays = [spread.draw_ms(1_000) for _ in range(1_000)]
    assert all(0 <= d <= 10_000 for d in delays)
    # spans the window
    assert min(delays) < 1_000
    assert max(delays) > 9_000
