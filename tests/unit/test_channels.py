"""Channel scores aggregated from their videos (the rule in realtube_push/domain/channels.py)."""

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtube_push.domain.categories import CATEGORIES
from realtube_push.domain.channels import ChannelVideo, score_channel


def video(score: float, total_votes: int = 1, **category_votes: int) -> ChannelVideo:
    return ChannelVideo(score=score, total_votes=total_votes, category_votes=category_votes)


def unvoted() -> ChannelVideo:
    return video(0.0, total_votes=0)


voted_videos = st.lists(
    st.builds(
        ChannelVideo,
        score=st.floats(min_value=0.0, max_value=100.0).map(lambda score: round(score, 1)),
        total_votes=st.integers(min_value=1, max_value=500),
        category_votes=st.dictionaries(st.sampled_from(CATEGORIES), st.integers(0, 100)),
    ),
    max_size=40,
)


@pytest.mark.parametrize(
    "videos",
    [
        pytest.param([], id="no-videos"),
        pytest.param([video(90.0), video(95.0)], id="two-flagged"),
        pytest.param([video(90.0), video(95.0), unvoted(), unvoted()], id="two-plus-unvoted"),
    ],
)
def test_channel_with_fewer_than_three_voted_videos_scores_zero(
    videos: list[ChannelVideo],
) -> None:
    assert score_channel(videos).score == 0.0


def test_channel_score_is_flagged_share_times_mean_flagged_score() -> None:
    result = score_channel([video(90.0), video(70.0), video(20.0), video(0.0)])
    assert (result.score, result.tracked, result.flagged) == (40.0, 4, 2)


def test_videos_without_votes_do_not_dilute_the_channel() -> None:
    result = score_channel([video(90.0), video(90.0), video(90.0), unvoted(), unvoted()])
    assert (result.score, result.tracked) == (90.0, 3)


@pytest.mark.parametrize(
    ("scores", "flagged"),
    [
        pytest.param([50.0, 50.0, 50.0], 3, id="at-threshold"),
        pytest.param([49.9, 49.9, 49.9], 0, id="just-below"),
    ],
)
def test_video_counts_as_flagged_from_score_50(scores: list[float], flagged: int) -> None:
    assert score_channel([video(score) for score in scores]).flagged == flagged


def test_channel_score_is_rounded_to_one_decimal() -> None:
    assert score_channel([video(60.0), video(70.0), video(0.0)]).score == 43.3


@pytest.mark.parametrize(
    ("videos", "expected"),
    [
        pytest.param(
            [
                video(90.0, fully_ai=5, ai_voiceover=1),
                video(10.0, ai_visuals=3, ai_voiceover=1),
                video(60.0, ai_thumbnails=1),
            ],
            ("fully_ai", "ai_visuals", "ai_voiceover"),
            id="most-voted-first-capped-at-three",
        ),
        pytest.param(
            [video(90.0, fully_ai=2, ai_assisted=2), video(80.0, ai_visuals=2), video(70.0)],
            ("ai_assisted", "ai_visuals", "fully_ai"),
            id="ties-by-name",
        ),
        pytest.param(
            [video(90.0, fully_ai=1), video(80.0, ai_visuals=0), video(70.0)],
            ("fully_ai",),
            id="zero-counts-left-out",
        ),
        pytest.param(
            [video(90.0, fully_ai=1), video(0.0, total_votes=0, ai_visuals=9)],
            ("fully_ai",),
            id="unvoted-video-ignored",
        ),
    ],
)
def test_top_categories_rank_votes_across_voted_videos(
    videos: list[ChannelVideo], expected: tuple[str, ...]
) -> None:
    assert score_channel(videos).top_categories == expected


@pytest.mark.parametrize(
    ("videos", "expected"),
    [
        pytest.param([video(90.0)] * 20, True, id="twenty-flagged-at-90"),
        pytest.param([video(80.0)] * 20, True, id="score-exactly-80"),
        pytest.param([video(90.0)] * 19, False, id="only-nineteen-flagged"),
        pytest.param([video(90.0)] * 20 + [video(10.0)] * 5, False, id="score-below-80"),
    ],
)
def test_channel_auto_flags_new_videos_when_strongly_and_widely_flagged(
    videos: list[ChannelVideo], expected: bool
) -> None:
    assert score_channel(videos).auto_flag_new is expected


def test_locked_channel_keeps_its_score_and_never_auto_flags() -> None:
    result = score_channel([video(90.0, fully_ai=1)] * 25, locked=True, current_score=12.0)
    assert (result.score, result.auto_flag_new) == (12.0, False)


def test_locked_channel_still_reports_its_counts() -> None:
    result = score_channel([video(90.0, fully_ai=1)] * 3 + [video(10.0)], locked=True)
    assert (result.tracked, result.flagged, result.top_categories) == (4, 3, ("fully_ai",))


@given(videos=voted_videos)
def test_channel_score_never_exceeds_mean_flagged_score(videos: list[ChannelVideo]) -> None:
    result = score_channel(videos)
    flagged_scores = [v.score for v in videos if v.score >= 50.0]
    if flagged_scores:
        # The channel score is rounded to 1 decimal; the mean is not.
        assert result.score <= statistics.fmean(flagged_scores) + 0.05
    else:
        assert result.score == 0.0


@given(videos=voted_videos)
def test_channel_score_always_within_zero_and_hundred(videos: list[ChannelVideo]) -> None:
    assert 0.0 <= score_channel(videos).score <= 100.0


@given(videos=voted_videos, extra=st.integers(min_value=1, max_value=10))
def test_adding_unvoted_videos_changes_nothing(videos: list[ChannelVideo], extra: int) -> None:
    padded = videos + [video(0.0, total_votes=0, fully_ai=3)] * extra
    assert score_channel(padded) == score_channel(videos)
