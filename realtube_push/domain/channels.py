"""The channel score: how much of a channel's voted-on output is flagged, and how strongly.

tracked = the channel's videos with any votes; flagged = those scoring >= 50. With at least
MIN_TRACKED_VIDEOS tracked, score = flagged / tracked * mean score of the flagged videos.
A channel with score >= 80 and >= 20 flagged videos, unless locked, auto-flags its new
videos (they start at the preliminary score, see ``scoring.score_video``).

Example: 4 tracked videos scoring 90, 70, 20, 0 -> 2 flagged, mean 80, score 2/4 * 80 = 40.

Promises: the score is within 0..100, rounded to 1 decimal, and never above the mean
flagged score (beyond that rounding); videos without votes change nothing.
"""

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from realtube_push.domain.scoring import is_flagged

MIN_TRACKED_VIDEOS: Final = 3
AUTO_FLAG_SCORE: Final = 80.0
AUTO_FLAG_MIN_FLAGGED: Final = 20
TOP_CATEGORIES: Final = 3


@dataclass(frozen=True, slots=True)
class ChannelVideo:
    """What channel aggregation needs of one video: its score and vote counts per category."""

    score: float
    total_votes: int
    category_votes: dict[str, int]


@dataclass(frozen=True, slots=True)
class ChannelScore:
    """The outcome for one channel; ``top_categories`` is most-voted first."""

    score: float
    tracked: int
    flagged: int
    top_categories: tuple[str, ...]
    auto_flag_new: bool


def score_channel(
    videos: Sequence[ChannelVideo],
    *,
    locked: bool = False,
    current_score: float = 0.0,
) -> ChannelScore:
    """Score a channel from its videos.

    Videos with no votes are ignored entirely. Fewer than ``MIN_TRACKED_VIDEOS`` tracked
    videos score 0, since two unlucky videos say little about a channel. A ``locked``
    channel keeps ``current_score`` and never auto-flags, though its counts and top
    categories are still computed. ``top_categories`` holds up to ``TOP_CATEGORIES``
    categories by votes summed over tracked videos, ties broken by name.
    """
    tracked_videos = [video for video in videos if video.total_votes > 0]
    flagged_scores = [video.score for video in tracked_videos if is_flagged(video.score)]
    tracked, flagged = len(tracked_videos), len(flagged_scores)

    if locked:
        score = current_score
    elif tracked < MIN_TRACKED_VIDEOS:
        score = 0.0
    else:
        # flagged / tracked * mean(flagged scores) is simply sum(flagged scores) / tracked.
        score = math.fsum(flagged_scores) / tracked
    score = round(score, 1)

    category_totals: Counter[str] = Counter()
    for video in tracked_videos:
        category_totals.update(video.category_votes)
    ranked = sorted(
        (category for category, count in category_totals.items() if count > 0),
        key=lambda category: (-category_totals[category], category),
    )

    return ChannelScore(
        score=score,
        tracked=tracked,
        flagged=flagged,
        top_categories=tuple(ranked[:TOP_CATEGORIES]),
        auto_flag_new=not locked and score >= AUTO_FLAG_SCORE and flagged >= AUTO_FLAG_MIN_FLAGGED,
    )
