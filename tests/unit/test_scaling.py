"""The scaler's decisions (Harvester's): table-driven rules and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skypanda.domain.scaling import (
    BACKOFF_FAILURES,
    BACKOFF_PAUSE_S,
    BACKOFF_WINDOW_S,
    Limits,
    QueueState,
    backing_off,
    backoff_pause_s,
    decide_pull,
    decide_push,
)

L = Limits(min_pilots=1, max_pilots=10, max_new_per_cycle=3, max_queued=4)


@pytest.mark.parametrize(
    ("limits", "state", "launch", "why"),
    [
        # idle queue: keep min_pilots ready
        (L, QueueState(activated=0, submitted=0, running=0), 1, "launch 1 (target 1)"),
        (L, QueueState(activated=0, submitted=0, running=1), 0, "enough (target 1)"),
        # zero idle pilots allowed
        (Limits(0, 10, 3, 4), QueueState(0, 0, 0), 0, "enough (target 0)"),
        # a burst boosts towards one pilot per job, at most max_new_per_cycle at once
        (L, QueueState(activated=500, submitted=0, running=1), 3, "capped by max_new_per_cycle 3"),
        # never more queued (launched, not yet running) than max_queued
        (L, QueueState(activated=500, submitted=3, running=2), 1, "capped by max_queued 4"),
        # never more than max_pilots
        (L, QueueState(activated=500, submitted=0, running=9), 1, "launch 1 (target 10)"),
        (L, QueueState(activated=500, submitted=2, running=8), 0, "enough (target 10)"),
        # a few jobs need only a few pilots (the running one is idle: it takes one of them)
        (L, QueueState(2, 0, 1, free_slots=1), 1, "launch 1 (target 2)"),
        # pilots that died or never checked in: back off, whatever is waiting
        (L, QueueState(500, 0, 0, recent_failures=3, paused_failures=1), 0, "backing off: 3"),
        (L, QueueState(500, 0, 0, recent_failures=2, paused_failures=2), 3, "capped by"),
        # but only for a pause after the last failure: then it tries again
        (L, QueueState(500, 0, 0, recent_failures=3, paused_failures=0), 3, "capped by"),
    ],
)
def test_pull_decisions(limits: Limits, state: QueueState, launch: int, why: str) -> None:
    d = decide_pull(limits, state)
    assert (d.launch, d.push) == (launch, ())
    assert why in d.reason


def test_push_launches_one_pilot_per_unserved_job_within_the_caps() -> None:
    state = QueueState(activated=5, submitted=1, running=0, unserved=("a", "b", "c", "d"))
    d = decide_push(L, state)
    assert d.push == ("a", "b", "c") and d.launch == 0
    assert "capped by max_new_per_cycle 3" in d.reason
    backed = decide_push(
        L, QueueState(5, 0, 0, recent_failures=5, unserved=("a",), paused_failures=1)
    )
    assert backed.push == () and backed.reason.startswith("backing off")


limits_st = st.builds(
    Limits, st.integers(0, 5), st.integers(0, 50), st.integers(1, 20), st.integers(1, 20)
).filter(lambda x: x.min_pilots <= x.max_pilots)
state_st = st.builds(
    QueueState,
    st.integers(0, 10_000),
    st.integers(0, 30),
    st.integers(0, 60),
    st.integers(0, 5),
    st.lists(st.text("abcdef", min_size=1, max_size=4), unique=True, max_size=40).map(tuple),
    st.integers(0, 5),
)


@given(limits=limits_st, state=state_st)
def test_never_negative_never_past_max_pilots_and_push_matches_jobs(
    limits: Limits, state: QueueState
) -> None:
    for d in (decide_pull(limits, state), decide_push(limits, state)):
        assert d.launch >= 0
        live = state.submitted + state.running
        # never more than max_pilots in all (unless already over), nor too many at once
        assert d.total <= max(0, limits.max_pilots - live)
        assert d.total <= limits.max_new_per_cycle
        assert d.total <= max(0, limits.max_queued - state.submitted)
    push = decide_push(limits, state)
    # push launches match jobs one to one, in order, never a job twice
    assert push.push == state.unserved[: len(push.push)]


def test_the_back_off_pause_grows_with_the_failures_and_is_bounded_by_the_window() -> None:
    # Given fewer failures than the threshold, Then no pause
    assert backoff_pause_s(BACKOFF_FAILURES - 1) == 0
    # Then the pause doubles with each further failure
    pauses = [backoff_pause_s(BACKOFF_FAILURES + k) for k in range(4)]
    assert pauses == [BACKOFF_PAUSE_S * 2**k for k in range(4)]
    # And never exceeds the window (failures older than the window are forgotten anyway)
    assert backoff_pause_s(1000) == BACKOFF_WINDOW_S


def test_the_back_off_says_how_it_ends() -> None:
    why = backing_off(QueueState(9, 0, 0, recent_failures=4, paused_failures=1))
    assert why is not None
    assert "launching again 60 s after the last one" in why and "reset-backoff" in why


@given(failures=st.integers(0, 100), paused=st.integers(0, 100))
def test_the_back_off_never_outlasts_its_pause(failures: int, paused: int) -> None:
    # Whatever the failures, a queue with none in the pause they call for launches again
    assert backing_off(QueueState(1, 0, 0, recent_failures=failures, paused_failures=0)) is None
    # And with fewer than the threshold it never backs off
    if failures < BACKOFF_FAILURES:
        assert backing_off(QueueState(1, 0, 0, failures, paused_failures=paused)) is None
