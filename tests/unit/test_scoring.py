"""Video scores from trust-weighted votes (the rule in realtube_push/domain/scoring.py)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtube_push.domain.categories import CATEGORIES
from realtube_push.domain.scoring import (
    PRELIMINARY_SCORE,
    VIP_LOCK_SCORE,
    CastVote,
    CategoryTally,
    is_flagged,
    is_strongly_flagged,
    score_video,
)
from realtube_push.domain.trust import NEW_ACCOUNT_TRUST

weights = st.floats(min_value=0.0, max_value=3.0, allow_subnormal=False)
votes_strategy = st.lists(
    st.builds(CastVote, category=st.sampled_from(CATEGORIES), weight=weights),
    max_size=30,
)


def votes(*pairs: tuple[str, float]) -> list[CastVote]:
    return [CastVote(category, weight) for category, weight in pairs]


def test_video_without_votes_scores_zero() -> None:
    result = score_video([])
    assert (result.score, result.categories, result.total_votes, result.locked) == (0, {}, 0, False)


def test_single_vote_from_new_account_is_not_a_full_flag() -> None:
    result = score_video([CastVote("fully_ai", NEW_ACCOUNT_TRUST)])
    assert result.score == 8.3
    assert not is_flagged(result.score)


@pytest.mark.parametrize(
    ("cast", "expected"),
    [
        pytest.param(votes(("fully_ai", 1.0)), 33.3, id="one-third-of-full-weight"),
        pytest.param(votes(("fully_ai", 1.0), ("fully_ai", 1.0)), 66.7, id="two-thirds"),
        pytest.param(votes(("fully_ai", 1.5), ("fully_ai", 1.5)), 100.0, id="exactly-full"),
        pytest.param(votes(("fully_ai", 3.0), ("fully_ai", 3.0)), 100.0, id="past-full-capped"),
    ],
)
def test_score_grows_with_weight_until_full_confidence(
    cast: list[CastVote], expected: float
) -> None:
    assert score_video(cast).score == expected


def test_confident_video_scores_its_leading_category_share() -> None:
    cast = votes(("fully_ai", 1.0), ("fully_ai", 1.0), ("ai_voiceover", 1.0))
    assert score_video(cast).score == 66.7


def test_each_voted_category_reports_its_votes_and_weight_share() -> None:
    cast = votes(("fully_ai", 0.75), ("ai_visuals", 0.25), ("fully_ai", 1.0))
    assert score_video(cast).categories == {
        "ai_visuals": CategoryTally(votes=1, weighted_score=12.5),
        "fully_ai": CategoryTally(votes=2, weighted_score=87.5),
    }


def test_categories_are_listed_by_name_whatever_the_vote_order() -> None:
    cast = votes(("fully_ai", 1.0), ("ai_voiceover", 1.0), ("ai_assisted", 1.0))
    assert list(score_video(cast).categories) == ["ai_assisted", "ai_voiceover", "fully_ai"]


def test_shadowbanned_vote_is_counted_but_carries_no_weight() -> None:
    result = score_video(votes(("fully_ai", 0.0), ("ai_visuals", 1.0)))
    assert result.total_votes == 2
    assert result.categories["fully_ai"] == CategoryTally(votes=1, weighted_score=0.0)
    assert result.categories["ai_visuals"] == CategoryTally(votes=1, weighted_score=100.0)


def test_video_with_only_weightless_votes_scores_zero() -> None:
    result = score_video(votes(("fully_ai", 0.0), ("fully_ai", 0.0)))
    assert result.score == 0.0
    assert result.categories == {"fully_ai": CategoryTally(votes=2, weighted_score=0.0)}


def test_score_is_rounded_once_at_the_end() -> None:
    # Share 66.666... times confidence 0.5 is 33.33; rounding the share first would give 33.4.
    assert score_video(votes(("fully_ai", 1.0), ("ai_visuals", 0.5))).score == 33.3


@pytest.mark.parametrize(
    "cast",
    [
        pytest.param([CastVote("ai_assisted", 0.75, vip=True)], id="vip-alone"),
        pytest.param(
            [*votes(("fully_ai", 3.0), ("ai_visuals", 3.0)), CastVote("fully_ai", 0.3, vip=True)],
            id="vip-among-others",
        ),
    ],
)
def test_vip_vote_locks_video_at_95(cast: list[CastVote]) -> None:
    result = score_video(cast)
    assert (result.score, result.locked) == (VIP_LOCK_SCORE, True)


def test_shadowbanned_vip_vote_does_not_lock_video() -> None:
    result = score_video([CastVote("fully_ai", 0.0, vip=True)])
    assert (result.score, result.locked) == (0.0, False)


@pytest.mark.parametrize(
    "cast",
    [
        pytest.param([], id="no-votes"),
        pytest.param(votes(("fully_ai", 3.0), ("fully_ai", 3.0)), id="strong-votes"),
        pytest.param([CastVote("fully_ai", 3.0, vip=True)], id="vip-vote"),
    ],
)
def test_locked_video_keeps_its_score(cast: list[CastVote]) -> None:
    result = score_video(cast, locked=True, current_score=42.0)
    assert (result.score, result.locked) == (42.0, True)


def test_locked_video_still_tallies_new_votes() -> None:
    result = score_video(votes(("fully_ai", 1.0), ("ai_visuals", 1.0)), locked=True)
    assert result.total_votes == 2
    assert result.categories["fully_ai"] == CategoryTally(votes=1, weighted_score=50.0)


@pytest.mark.parametrize(
    "cast",
    [
        pytest.param([], id="no-votes-yet"),
        pytest.param(votes(("ai_assisted", 0.5), ("ai_visuals", 0.5)), id="few-split-votes"),
    ],
)
def test_new_video_of_auto_flag_channel_starts_preliminarily_flagged(
    cast: list[CastVote],
) -> None:
    result = score_video(cast, preliminary=True)
    assert result.score == PRELIMINARY_SCORE
    assert not result.locked


@pytest.mark.parametrize(
    ("cast", "expected"),
    [
        pytest.param(
            votes(("fully_ai", 1.0), ("ai_visuals", 1.0), ("ai_assisted", 1.0)),
            33.3,
            id="full-confidence-disagreement-lowers",
        ),
        pytest.param(votes(("fully_ai", 2.4)), 80.0, id="strong-votes-raise-before-full"),
    ],
)
def test_video_own_votes_override_the_preliminary_score(
    cast: list[CastVote], expected: float
) -> None:
    assert score_video(cast, preliminary=True).score == expected


def test_full_confidence_weight_is_configurable() -> None:
    assert score_video(votes(("fully_ai", 1.0)), full_confidence_weight=1.0).score == 100.0


@pytest.mark.parametrize("full_confidence_weight", [0.0, -1.0])
def test_non_positive_full_confidence_weight_is_refused(full_confidence_weight: float) -> None:
    with pytest.raises(ValueError, match="full_confidence_weight"):
        score_video([], full_confidence_weight=full_confidence_weight)


@pytest.mark.parametrize(
    ("score", "flagged", "strongly"),
    [
        pytest.param(0.0, False, False, id="clean"),
        pytest.param(49.9, False, False, id="just-below-flag"),
        pytest.param(50.0, True, False, id="flag-threshold"),
        pytest.param(79.9, True, False, id="just-below-strong"),
        pytest.param(80.0, True, True, id="strong-threshold"),
        pytest.param(100.0, True, True, id="certain"),
    ],
)
def test_flag_thresholds_are_inclusive(score: float, flagged: bool, strongly: bool) -> None:
    assert (is_flagged(score), is_strongly_flagged(score)) == (flagged, strongly)


@given(cast=votes_strategy, preliminary=st.booleans())
def test_score_always_within_zero_and_hundred(cast: list[CastVote], preliminary: bool) -> None:
    result = score_video(cast, preliminary=preliminary)
    assert 0.0 <= result.score <= 100.0
    assert all(0.0 <= tally.weighted_score <= 100.0 for tally in result.categories.values())


@given(cast=votes_strategy)
def test_weighted_scores_sum_to_hundred_when_any_vote_has_weight(cast: list[CastVote]) -> None:
    result = score_video(cast)
    total = sum(tally.weighted_score for tally in result.categories.values())
    if any(vote.weight > 0 for vote in cast):
        # Each share is rounded to 1 decimal, so each may be off by up to 0.05.
        assert total == pytest.approx(100.0, abs=0.05 * len(result.categories) + 1e-9)
    else:
        assert total == 0.0


@given(cast=votes_strategy)
def test_category_vote_counts_add_up_to_total_votes(cast: list[CastVote]) -> None:
    result = score_video(cast)
    assert result.total_votes == len(cast)
    assert sum(tally.votes for tally in result.categories.values()) == len(cast)


@given(cast=votes_strategy, data=st.data())
def test_vote_order_never_changes_the_outcome(cast: list[CastVote], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(cast))
    assert score_video(shuffled) == score_video(cast)
