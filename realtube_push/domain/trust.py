"""How much a user's vote counts.

Trust (0..1) = 0.30 * min(age_days / 60, 1) + 0.50 * accuracy + 0.20 * min(total_votes / 100, 1),
where accuracy is the share of the user's votes in the last 30 days that landed on videos now
scoring >= 50, or a neutral 0.5 until the user has 10 votes in that window. A vote's effective
weight is trust times a base of 1.0 (regular), 3.0 (VIP) or 0.0 (shadowbanned: the vote is
recorded, never counted).

Promises: ``trust_score`` is always within [0, 1] and rounded to 4 decimals;
``vote_weight`` is 0.0 for a shadowbanned user whatever else is true.
"""

from typing import Final

NEW_ACCOUNT_TRUST: Final = 0.25
MIN_VOTES_FOR_ACCURACY: Final = 10
ACCURACY_WINDOW_DAYS: Final = 30
ACCURATE_SCORE: Final = 50.0

_AGE_SHARE: Final = 0.30
_ACCURACY_SHARE: Final = 0.50
_VOLUME_SHARE: Final = 0.20
_FULL_AGE_DAYS: Final = 60.0
_FULL_VOLUME_VOTES: Final = 100
# Until a user has a meaningful sample, accuracy is a coin flip rather than 0 or 1.
_NEUTRAL_ACCURACY: Final = 0.5

_REGULAR_BASE: Final = 1.0
_VIP_BASE: Final = 3.0


def accuracy_rate(window_votes: int, accurate_votes: int) -> float:
    """Return the share of accurate votes in the accuracy window, within [0, 1].

    Below ``MIN_VOTES_FOR_ACCURACY`` window votes the rate is a neutral 0.5, so a handful
    of early votes can neither make nor break a new account.
    """
    if window_votes < MIN_VOTES_FOR_ACCURACY:
        return _NEUTRAL_ACCURACY
    # Counts are read at different moments, so accurate may briefly exceed the window total.
    return min(max(accurate_votes / window_votes, 0.0), 1.0)


def trust_score(age_days: float, total_votes: int, window_votes: int, accurate_votes: int) -> float:
    """Return the user's trust in [0, 1], rounded to 4 decimals.

    ``age_days`` is the account age (negative, e.g. from clock skew, counts as 0);
    ``total_votes`` counts all the user's votes; ``window_votes`` and ``accurate_votes``
    count those in the last ``ACCURACY_WINDOW_DAYS`` days and the accurate ones among them.
    """
    age = min(max(age_days, 0.0) / _FULL_AGE_DAYS, 1.0)
    volume = min(max(total_votes, 0) / _FULL_VOLUME_VOTES, 1.0)
    accuracy = accuracy_rate(window_votes, accurate_votes)
    trust = _AGE_SHARE * age + _ACCURACY_SHARE * accuracy + _VOLUME_SHARE * volume
    return round(min(max(trust, 0.0), 1.0), 4)


def vote_weight(trust: float, *, is_vip: bool, is_shadowbanned: bool) -> float:
    """Return the effective weight of a vote cast with ``trust``.

    A shadowbanned VIP still weighs 0.0: the ban must win, or it would be lifted by a
    promotion.
    """
    if is_shadowbanned:
        return 0.0
    return trust * (_VIP_BASE if is_vip else _REGULAR_BASE)
