"""The transport ladder alone: when the client falls back, stays, or probes the best one."""

from __future__ import annotations

import pytest

from realtube_push.client.ladder import Ladder

UPGRADE = 300.0


def ladder() -> Ladder:
    return Ladder(rungs=3, fallback_after=2, upgrade_interval=UPGRADE)


def test_two_sessions_that_never_connect_fall_back_one_rung():
    steps = ladder()
    assert steps.after("lost", connected=False, now=0) is False
    assert steps.after("lost", connected=False, now=1) is True
    assert steps.level == 1
    assert steps.upgrade_at == 1 + UPGRADE


def test_a_fatal_ending_falls_back_at_once_but_never_below_the_last_rung():
    steps = ladder()
    assert steps.after("fatal", connected=False, now=0) is True
    assert steps.after("fatal", connected=False, now=0) is True
    assert steps.level == 2
    assert steps.after("fatal", connected=False, now=0) is False
    assert steps.level == 2


@pytest.mark.parametrize("kind", ["shed", "reconnect"])
def test_shedding_and_reconnect_notices_never_move_the_client_off_its_transport(kind):
    steps = ladder()
    for _ in range(10):
        assert steps.after(kind, connected=False, now=0) is False
    assert (steps.level, steps.failures) == (0, 0)


def test_a_connection_that_worked_clears_the_failures():
    steps = ladder()
    steps.after("lost", connected=False, now=0)
    steps.connected()
    assert steps.after("lost", connected=True, now=0) is False
    assert steps.after("lost", connected=False, now=0) is False
    assert steps.level == 0


def test_below_the_top_the_best_transport_is_probed_every_upgrade_interval():
    steps = ladder()
    steps.after("fatal", connected=False, now=0)
    assert steps.time_to_probe(10) == UPGRADE - 10
    assert steps.probe_if_due(UPGRADE - 1) is False
    assert steps.probe_if_due(UPGRADE) is True
    assert steps.level == 0
    assert steps.upgrade_at == 2 * UPGRADE


def test_a_failed_probe_walks_back_down_to_where_the_client_was_without_counting():
    steps = ladder()
    steps.after("fatal", connected=False, now=0)
    steps.after("fatal", connected=False, now=0)
    assert steps.level == 2
    steps.probe_if_due(UPGRADE)
    assert steps.after("lost", connected=False, now=UPGRADE) is True
    assert steps.level == 1
    # an overloaded server during a probe is a failed probe too: back to the working rung
    assert steps.after("shed", connected=False, now=UPGRADE + 20) is True
    assert (steps.level, steps.probe_from, steps.failures) == (2, None, 0)
    # a full interval on the working rung before the next probe, however long the probe took
    assert steps.upgrade_at == UPGRADE + 20 + UPGRADE


def test_a_probe_that_connects_stays_on_the_better_transport():
    steps = ladder()
    steps.after("fatal", connected=False, now=0)
    steps.probe_if_due(UPGRADE)
    steps.connected()
    assert steps.after("lost", connected=True, now=UPGRADE + 5) is False
    assert (steps.level, steps.probe_from) == (0, None)
    assert steps.time_to_probe(UPGRADE + 5) == float("inf")
