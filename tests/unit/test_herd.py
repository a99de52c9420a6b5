"""Herds: the window their delays are drawn over grows with the herd, within its bounds;
replays are cut where clients resuming together share the frames."""

from __future__ import annotations

from realtube_push.push.herd import HerdSpread
from realtube_push.push.replay import frame_end


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


def test_a_replay_is_cut_at_page_boundaries_and_before_its_tail() -> None:
    # from a cursor mid-page: to the page's end, whole pages, then the last page up to a
    # multiple of TAIL_STEP, then the few seqs up to the head
    cuts, after = [], 1_500
    while after < 3_700:
        after = frame_end(after, 3_700)
        cuts.append(after)
    assert cuts == [2_000, 3_000, 3_648, 3_700]
    assert frame_end(3_648, 3_700) == 3_700
    assert frame_end(10, 20) == 20  # a gap shorter than the tail step: one frame
