"""Users: lookup-or-create, the trust refresh's reads and writes, and moderation flags.

Promises:
- ``get_or_create_user`` is one statement: concurrent first requests for the same id create
  one row, and a lookup never counts as activity (``last_active`` is left as it was);
- the trust reads are keyset-paginated by ``user_id`` and set-based (one query per page,
  whatever the page size), so a refresh over millions of users holds no long transaction
  and no per-user round trip;
- trust writes never touch existing votes: a vote's weight is the snapshot taken when it was
  cast (DESIGN "The spine"), so a trust change only affects the user's later votes;
- a shadowban changes the flag only; the caller re-queues the returned videos, whose scores
  the score worker then recomputes without (or again with) the user's votes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from realtube_push.store.db import Executor


@dataclass(frozen=True, slots=True)
class TrustInputs:
    """What the trust formula needs of one user, as counted now."""

    user_id: str
    age_days: float
    total_votes: int
    window_votes: int
    accurate_votes: int


@dataclass(frozen=True, slots=True)
class TrustWrite:
    """A user's refreshed trust and accuracy rate."""

    user_id: str
    trust_score: float
    accuracy_rate: float


_GET_OR_CREATE = """
INSERT INTO users (user_id, trust_score) VALUES ($1, $2)
ON CONFLICT (user_id) DO UPDATE SET last_active = users.last_active
RETURNING *, extract(epoch FROM now() - first_seen) / 86400.0 AS age_days
"""


async def get_or_create_user(conn: Executor, user_id: str, new_trust: float) -> asyncpg.Record:
    """The user's row, created with ``new_trust`` and defaults when unknown.

    Columns: every ``users`` column plus ``age_days`` (float days since ``first_seen``).
    The no-op ``DO UPDATE`` is what makes ``RETURNING`` yield the existing row.
    """
    row = await conn.fetchrow(_GET_OR_CREATE, user_id, new_trust)
    assert row is not None
    return row


# Votes in the window are found through votes_user_idx (user_id, cast_at); accuracy uses the
# video's score as it is now, which is the point: a vote is judged by where the crowd ended.
_TRUST_PAGE = """
WITH page AS (
    SELECT user_id, first_seen, total_votes FROM users
    WHERE $1::text IS NULL OR user_id > $1::text
    ORDER BY user_id LIMIT $2
)
SELECT p.user_id,
       extract(epoch FROM now() - p.first_seen) / 86400.0 AS age_days,
       p.total_votes,
       count(v.id) AS window_votes,
       count(v.id) FILTER (WHERE vid.score >= $4) AS accurate_votes
FROM page p
LEFT JOIN votes v ON v.user_id = p.user_id AND v.cast_at >= now() - make_interval(days => $3)
LEFT JOIN videos vid ON vid.video_id = v.video_id
GROUP BY p.user_id, p.first_seen, p.total_votes
ORDER BY p.user_id
"""


async def trust_inputs_page(
    conn: Executor,
    *,
    after_user_id: str | None,
    limit: int,
    window_days: int,
    accurate_score: float,
) -> list[TrustInputs]:
    """Up to ``limit`` users with ``user_id > after_user_id`` (all from the start when None).

    ``window_votes`` counts votes cast in the last ``window_days`` days and ``accurate_votes``
    those among them on videos now scoring ``>= accurate_score``; both thresholds come from
    the caller (``domain.trust``), so policy stays out of SQL.
    """
    rows = await conn.fetch(
        _TRUST_PAGE, after_user_id, limit, int(window_days), float(accurate_score)
    )
    return [
        TrustInputs(
            user_id=r["user_id"],
            age_days=float(r["age_days"]),
            total_votes=int(r["total_votes"]),
            window_votes=int(r["window_votes"]),
            accurate_votes=int(r["accurate_votes"]),
        )
        for r in rows
    ]


async def write_trust(conn: Executor, writes: Sequence[TrustWrite]) -> int:
    """Store refreshed trust in one statement, stamping ``trust_updated_at``; returns rows hit."""
    if not writes:
        return 0
    status = await conn.execute(
        "UPDATE users u SET trust_score = s.trust_score, accuracy_rate = s.accuracy_rate,"
        " trust_updated_at = now()"
        " FROM unnest($1::text[], $2::float8[], $3::float8[])"
        "     AS s(user_id, trust_score, accuracy_rate)"
        " WHERE u.user_id = s.user_id",
        [w.user_id for w in writes],
        [w.trust_score for w in writes],
        [w.accuracy_rate for w in writes],
    )
    return int(status.split()[-1])


_SHADOWBAN = """
WITH target AS (
    UPDATE users SET is_shadowbanned = $2 WHERE user_id = $1 RETURNING user_id
)
SELECT v.video_id FROM votes v JOIN target t ON t.user_id = v.user_id ORDER BY v.video_id
"""


async def set_shadowban(conn: Executor, user_id: str, banned: bool) -> list[str]:
    """Set or lift the shadowban; returns the videos the user voted on (empty when unknown).

    The votes stay recorded either way; the caller re-queues the returned videos so their
    scores are recomputed with the votes (not) counting.
    """
    rows = await conn.fetch(_SHADOWBAN, user_id, banned)
    return [r["video_id"] for r in rows]


async def set_vip(conn: Executor, user_id: str, vip: bool) -> bool:
    """Grant or revoke VIP; returns False when the user is unknown.

    Affects votes cast from now on (weights and the VIP lock are snapshotted per vote).
    """
    status = await conn.execute("UPDATE users SET is_vip = $2 WHERE user_id = $1", user_id, vip)
    return status != "UPDATE 0"
