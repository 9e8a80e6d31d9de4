"""Pilots' free slots, known to the pilot (it holds no job beyond them once a payload runs long)
and to the scaler (a waiting job that no free slot covers gets a pilot): the pure decisions,
then the pilot's registry giving back jobs no worker took."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skypanda.domain.scaling import Limits, QueueState, decide_pull, uncovered
from skypanda.pilot.held import HeldJob, Registry, take_back
from skypanda.pilot.pacing import (
    GIVE_BACK_AFTER_S,
    PREFETCH_BELOW_S,
    acquire_size,
    give_back_count,
)

# --- the scaler -------------------------------------------------------------------------------

ONE_TO_TWO = Limits(min_pilots=1, max_pilots=2, max_new_per_cycle=10, max_queued=10)


def test_a_busy_pilot_does_not_serve_a_waiting_job() -> None:
    # Given the only pilot, its one slot busy, and a job waiting
    state = QueueState(activated=1, submitted=0, running=1, free_slots=0)
    # When the scaler decides
    d = decide_pull(ONE_TO_TWO, state)
    # Then a second pilot is launched for the job, and the reason says why
    assert d.launch == 1
    assert "1 jobs waiting, 1 without a free slot" in d.reason
    assert "1 running (0 slots free)" in d.reason and "launch 1 (target 2)" in d.reason


def test_an_idle_pilot_serves_a_waiting_job() -> None:
    # Given the only pilot with a slot free, and a job waiting (its long-poll takes it)
    d = decide_pull(ONE_TO_TWO, QueueState(activated=1, submitted=0, running=1, free_slots=1))
    # Then no pilot is launched
    assert d.launch == 0 and "enough (target 1)" in d.reason


@pytest.mark.parametrize(
    ("state", "launch", "why"),
    [
        # a pilot launched and not yet running brings its slots (4 each here)
        (QueueState(4, 1, 1, free_slots=0, slots_per_pilot=4), 0, "0 without a free slot"),
        (QueueState(5, 1, 1, free_slots=0, slots_per_pilot=4), 1, "launch 1 (target 3)"),
        # new pilots are counted by their slots too: 9 jobs, 4 slots a pilot -> 3 pilots
        (QueueState(9, 0, 0, slots_per_pilot=4), 2, "launch 2 of 3 wanted"),
        # free slots cover that many jobs, whatever pilot they are on
        (QueueState(6, 0, 3, free_slots=5), 1, "launch 1 (target 4)"),
        # the caps and the back-off still hold
        (QueueState(50, 0, 3, free_slots=0), 2, "capped by max_new_per_cycle 2"),
        (QueueState(50, 0, 10, free_slots=0), 0, "max_pilots 10 reached, the rest wait"),
        (QueueState(50, 0, 1, 3, paused_failures=1), 0, "backing off"),
        # the minimum is kept whatever the slots
        (QueueState(0, 0, 0, free_slots=0), 1, "launch 1 (target 1)"),
    ],
)
def test_pull_decisions_count_slots(state: QueueState, launch: int, why: str) -> None:
    limits = Limits(min_pilots=1, max_pilots=10, max_new_per_cycle=2, max_queued=5)
    d = decide_pull(limits, state)
    assert d.launch == launch
    assert why in d.reason


limits_st = st.builds(
    Limits, st.integers(0, 5), st.integers(0, 50), st.integers(1, 20), st.integers(1, 20)
).filter(lambda x: x.min_pilots <= x.max_pilots)
state_st = st.builds(
    QueueState,
    activated=st.integers(0, 1000),
    submitted=st.integers(0, 30),
    running=st.integers(0, 60),
    free_slots=st.integers(0, 200),
    slots_per_pilot=st.integers(1, 8),
)


@given(limits=limits_st, state=state_st, more=st.integers(1, 100))
def test_more_free_slots_never_launch_more_pilots(
    limits: Limits, state: QueueState, more: int
) -> None:
    freer = QueueState(
        state.activated, state.submitted, state.running,
        free_slots=state.free_slots + more, slots_per_pilot=state.slots_per_pilot,
    )  # fmt: skip
    assert decide_pull(limits, freer).launch <= decide_pull(limits, state).launch


@given(limits=limits_st, state=state_st)
def test_jobs_all_covered_launch_only_for_the_minimum(limits: Limits, state: QueueState) -> None:
    d = decide_pull(limits, state)
    if uncovered(state) == 0:
        assert d.launch <= max(0, limits.min_pilots - state.submitted - state.running)
    else:  # some job is left without a slot: launch, unless a cap says no
        live = state.submitted + state.running
        room = min(limits.max_pilots - live, limits.max_new_per_cycle,
                   limits.max_queued - state.submitted)  # fmt: skip
        assert d.launch >= min(1, max(0, room))


# --- the pilot's pace -------------------------------------------------------------------------


def test_short_jobs_are_prefetched_while_no_payload_runs_long() -> None:
    # Given a pilot with one slot running one job, recent jobs short (50 ms)
    def size(longest_running_s: float) -> int:
        return acquire_size(
            held=1, slots=1, per_acquire=8, mean_runtime_s=0.05, remaining=None,
            longest_running_s=longest_running_s,
        )  # fmt: skip

    # Then while that job is short it holds more than its slot: the next jobs are at hand
    assert size(0.01) == 8
    # But once its payload has outlived the short-job regime, it asks for nothing more
    assert size(PREFETCH_BELOW_S) == 0


def test_a_long_payload_still_leaves_the_other_slots_asked_for() -> None:
    # Given two slots, one busy with a long payload: one more job (the free slot), no prefetch
    n = acquire_size(
        held=1, slots=2, per_acquire=8, mean_runtime_s=0.05, remaining=None,
        longest_running_s=10 * PREFETCH_BELOW_S,
    )  # fmt: skip
    assert n == 1


@pytest.mark.parametrize(
    ("waiting", "running", "slots", "longest", "back"),
    [
        (3, 1, 1, GIVE_BACK_AFTER_S, 3),  # the only slot busy: all three go back
        (3, 1, 2, GIVE_BACK_AFTER_S, 2),  # one slot free: it keeps one to start now
        (3, 1, 1, GIVE_BACK_AFTER_S / 2, 0),  # the payload may still be short: keep them
        (0, 1, 1, 100.0, 0),
        (2, 0, 4, 100.0, 0),  # (nothing runs: nothing to wait behind)
    ],
)
def test_give_back_what_the_free_slots_cannot_start(
    waiting: int, running: int, slots: int, longest: float, back: int
) -> None:
    got = give_back_count(waiting=waiting, running=running, slots=slots, longest_running_s=longest)
    assert got == back


# --- the pilot's registry ---------------------------------------------------------------------


def _job(i: int) -> HeldJob:
    return HeldJob({"id": f"j{i}", "attempt": 1})


def test_take_back_withdraws_the_jobs_no_worker_took_last_acquired_first() -> None:
    # Given a pilot with one slot: a payload running, two jobs queued behind it
    registry = Registry(on_empty=lambda: None)
    running, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def work(held: HeldJob) -> None:
        held.started = True
        running.set()
        ran.append(held.id)
        release.wait(30)

    with ThreadPoolExecutor(max_workers=1) as pool:
        jobs = [_job(i) for i in range(3)]
        for held in jobs:
            registry.add(held)
            held.future = pool.submit(work, held)
        assert running.wait(30)
        # While the payload is young, nothing goes back
        assert take_back(registry, slots=1) == []
        # When it has run past the give-back threshold
        assert jobs[0].started_at is not None
        jobs[0].started_at -= GIVE_BACK_AFTER_S + 1
        back = take_back(registry, slots=1)
        # Then both queued jobs go back, the last acquired first, and never run here
        assert [h.id for h in back] == ["j2", "j1"]
        assert all(h.future is not None and h.future.cancelled() for h in back)
        release.set()
    assert ran == ["j0"]


def test_running_for_counts_only_jobs_a_worker_took_and_not_ended() -> None:
    registry = Registry(on_empty=lambda: None)
    young, old, ended, queued = (_job(i) for i in range(4))
    for held in (young, old, ended, queued):
        registry.add(held)
    young.started = True
    old.started = True
    assert old.started_at is not None
    old.started_at = time.monotonic() - 5.0
    ended.started = True
    ended.ended = True
    count, longest = registry.running_for()
    assert count == 2 and 5.0 <= longest < 60.0
