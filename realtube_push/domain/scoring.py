"""The video score: how strongly the crowd, weighted by trust, says a video is AI.

For each category, weightedScore = sum of that category's vote weights / sum of all vote
weights * 100. The video score is the highest weightedScore times a confidence of
min(1, total weight / FULL_CONFIDENCE_WEIGHT): without it one vote from a day-old account
would score 100 and trust would not matter. A counting VIP vote locks the video at 95; a
locked video keeps its score while its votes are still tallied.

Example: two votes of weight 0.25, both ``fully_ai``, give weightedScore 100 but confidence
0.5 / 3 = 0.1667, so the video scores 16.7 and is not flagged.

Promises: scores and weightedScores are within 0..100 and rounded to 1 decimal at the end
(never in between); a video's weightedScores sum to 100 (up to that rounding) whenever any
vote has weight.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

FULL_CONFIDENCE_WEIGHT: Final = 3.0
VIP_LOCK_SCORE: Final = 95.0
FLAGGED_SCORE: Final = 50.0
STRONGLY_FLAGGED_SCORE: Final = 80.0
PRELIMINARY_SCORE: Final = 60.0


@dataclass(frozen=True, slots=True)
class CastVote:
    """One stored vote: category, effective weight (trust times base), cast by a VIP or not.

    A VIP vote of weight 0 (a shadowbanned VIP) is recorded but, like every shadowbanned
    vote, does not count, so it does not lock the video.
    """

    category: str
    weight: float
    vip: bool = False


@dataclass(frozen=True, slots=True)
class CategoryTally:
    """Votes for one category of a video: how many, and their share of the weight (0..100)."""

    votes: int
    weighted_score: float


@dataclass(frozen=True, slots=True)
class VideoScore:
    """The outcome for one video; ``categories`` holds every category with at least one vote."""

    score: float
    categories: dict[str, CategoryTally]
    total_votes: int
    locked: bool


def score_video(
    votes: Sequence[CastVote],
    *,
    locked: bool = False,
    current_score: float = 0.0,
    preliminary: bool = False,
    full_confidence_weight: float = FULL_CONFIDENCE_WEIGHT,
) -> VideoScore:
    """Score a video from all its votes.

    - ``locked``: the video keeps ``current_score``; votes are still tallied.
    - Otherwise a counting VIP vote locks it at ``VIP_LOCK_SCORE``.
    - Otherwise score = highest weightedScore * confidence.
    - ``preliminary`` (a new video of an auto-flag channel): the score is at least
      ``PRELIMINARY_SCORE`` until the video's own votes reach full confidence, after which
      they alone decide, in either direction.

    Weight-0 votes count in ``votes`` and ``total_votes`` but not in any weight; with no
    weight at all every weightedScore is 0. ``categories`` is ordered by category name so
    the same votes always give the same output.
    """
    categories: dict[str, CategoryVotes] = {}
    for vote in votes:
        tally = categories.setdefault(vote.category, CategoryVotes())
        tally.votes += 1
        tally.weights.append(vote.weight)
    return score_categories(
        categories,
        vip_lock=any(vote.vip and vote.weight > 0 for vote in votes),
        locked=locked,
        current_score=current_score,
        preliminary=preliminary,
        full_confidence_weight=full_confidence_weight,
    )


@dataclass(slots=True)
class CategoryVotes:
    """One category's votes: how many (weightless ones included) and the weights that count.

    A weightless vote may be left out of ``weights``: adding 0.0 changes no sum.
    """

    votes: int = 0
    weights: list[float] = field(default_factory=list)


def score_categories(
    categories: Mapping[str, CategoryVotes],
    *,
    vip_lock: bool,
    locked: bool = False,
    current_score: float = 0.0,
    preliminary: bool = False,
    full_confidence_weight: float = FULL_CONFIDENCE_WEIGHT,
) -> VideoScore:
    """``score_video`` from votes already grouped by category (``vip_lock``: a counting VIP
    vote is among them). For a store that groups in SQL: the sums are still taken here, so
    the result is the one ``score_video`` gives for the same votes, to the last bit."""
    if full_confidence_weight <= 0:
        raise ValueError(f"full_confidence_weight must be positive, got {full_confidence_weight!r}")

    # fsum is exact before its single rounding, so the order the store returns votes in
    # cannot change a score.
    category_weights = {category: math.fsum(c.weights) for category, c in categories.items()}
    total_weight = math.fsum(category_weights.values())
    shares = {
        category: weight / total_weight * 100 if total_weight > 0 else 0.0
        for category, weight in category_weights.items()
    }

    if locked:
        score = current_score
    elif vip_lock:
        score, locked = VIP_LOCK_SCORE, True
    else:
        confidence = min(1.0, total_weight / full_confidence_weight)
        score = max(shares.values(), default=0.0) * confidence
        if preliminary and total_weight < full_confidence_weight:
            score = max(score, PRELIMINARY_SCORE)

    return VideoScore(
        score=round(score, 1),
        categories={
            category: CategoryTally(
                votes=categories[category].votes, weighted_score=round(shares[category], 1)
            )
            for category in sorted(categories)
        },
        total_votes=sum(c.votes for c in categories.values()),
        locked=locked,
    )


def is_flagged(score: float) -> bool:
    """Return whether a video with ``score`` counts as flagged (>= 50)."""
    return score >= FLAGGED_SCORE


def is_strongly_flagged(score: float) -> bool:
    """Return whether a video with ``score`` counts as strongly flagged (>= 80)."""
    return score >= STRONGLY_FLAGGED_SCORE
