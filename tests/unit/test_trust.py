"""Trust and vote weight (the rule in realtube_push/domain/trust.py)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtube_push.domain.trust import (
    MIN_VOTES_FOR_ACCURACY,
    NEW_ACCOUNT_TRUST,
    accuracy_rate,
    trust_score,
    vote_weight,
)

ages = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
counts = st.integers(min_value=0, max_value=10_000)


def test_brand_new_account_starts_at_new_account_trust() -> None:
    assert trust_score(0, 0, 0, 0) == NEW_ACCOUNT_TRUST


@pytest.mark.parametrize(
    ("age_days", "total_votes", "window_votes", "accurate_votes", "expected"),
    [
        pytest.param(30, 0, 0, 0, 0.40, id="half-way-to-full-age"),
        pytest.param(0, 50, 0, 0, 0.35, id="half-way-to-full-volume"),
        pytest.param(60, 100, 10, 10, 1.0, id="veteran-always-right"),
        pytest.param(0, 10, 10, 0, 0.02, id="ten-votes-all-wrong"),
    ],
)
def test_trust_weighs_age_accuracy_and_volume(
    age_days: float, total_votes: int, window_votes: int, accurate_votes: int, expected: float
) -> None:
    assert trust_score(age_days, total_votes, window_votes, accurate_votes) == expected


@pytest.mark.parametrize(
    ("age_days", "total_votes"),
    [
        pytest.param(61, 100, id="age-past-60-days"),
        pytest.param(60, 101, id="votes-past-100"),
        pytest.param(3650, 100_000, id="far-past-both"),
    ],
)
def test_age_and_volume_stop_adding_trust_at_their_caps(age_days: float, total_votes: int) -> None:
    assert trust_score(age_days, total_votes, 10, 10) == 1.0


@pytest.mark.parametrize(
    ("window_votes", "accurate_votes"),
    [
        pytest.param(0, 0, id="no-votes"),
        pytest.param(9, 0, id="nine-all-wrong"),
        pytest.param(9, 9, id="nine-all-right"),
    ],
)
def test_accuracy_is_neutral_until_ten_votes_in_window(
    window_votes: int, accurate_votes: int
) -> None:
    assert window_votes < MIN_VOTES_FOR_ACCURACY
    assert accuracy_rate(window_votes, accurate_votes) == 0.5


@pytest.mark.parametrize(
    ("window_votes", "accurate_votes", "expected"),
    [
        pytest.param(10, 10, 1.0, id="all-right"),
        pytest.param(10, 7, 0.7, id="seven-of-ten"),
        pytest.param(40, 0, 0.0, id="all-wrong"),
        pytest.param(10, 12, 1.0, id="racy-count-clamped"),
    ],
)
def test_accuracy_is_share_of_accurate_votes_from_ten_votes_on(
    window_votes: int, accurate_votes: int, expected: float
) -> None:
    assert accuracy_rate(window_votes, accurate_votes) == pytest.approx(expected)


def test_account_with_clock_skewed_negative_age_counts_as_new() -> None:
    assert trust_score(-5, 0, 0, 0) == NEW_ACCOUNT_TRUST


def test_trust_is_rounded_to_four_decimals() -> None:
    # 0.5 * (10 / 30) + 0.2 * (30 / 100) = 0.22666...
    assert trust_score(0, 30, 30, 10) == 0.2267


@pytest.mark.parametrize(
    ("is_vip", "is_shadowbanned", "expected"),
    [
        pytest.param(False, False, 0.5, id="regular"),
        pytest.param(True, False, 1.5, id="vip-triples"),
        pytest.param(False, True, 0.0, id="shadowbanned-counts-nothing"),
        pytest.param(True, True, 0.0, id="shadowban-beats-vip"),
    ],
)
def test_vote_weight_is_trust_times_account_base(
    is_vip: bool, is_shadowbanned: bool, expected: float
) -> None:
    weight = vote_weight(0.5, is_vip=is_vip, is_shadowbanned=is_shadowbanned)
    assert weight == pytest.approx(expected)


@given(age=ages, total=counts, window=counts, accurate=counts)
def test_trust_is_always_between_zero_and_one_with_four_decimals(
    age: float, total: int, window: int, accurate: int
) -> None:
    trust = trust_score(age, total, window, accurate)
    assert 0.0 <= trust <= 1.0
    assert trust == round(trust, 4)


@given(age=ages, older_by=st.floats(0, 1e4), total=counts, window=counts, accurate=counts)
def test_older_account_never_has_less_trust(
    age: float, older_by: float, total: int, window: int, accurate: int
) -> None:
    younger = trust_score(age, total, window, accurate)
    assert trust_score(age + older_by, total, window, accurate) >= younger


@given(total=counts, window=counts, data=st.data())
def test_more_accurate_votes_never_lower_trust(
    total: int, window: int, data: st.DataObject
) -> None:
    accurate = data.draw(st.integers(min_value=0, max_value=window))
    better = data.draw(st.integers(min_value=accurate, max_value=window))
    assert trust_score(10, total, window, better) >= trust_score(10, total, window, accurate)
