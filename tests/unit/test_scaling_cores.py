"""The pull scaler counts cores as well as jobs (domain.scaling): a job takes a slot of its
pilot and the cores it asks for, so a pilot busy with one 8-core job serves no other, and
eight 8-core jobs waiting need eight pilots of 8 cores. With 1-core jobs on pilots of one slot
per core, counting cores is counting jobs: the decisions are the ones of before."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skypanda.domain.scaling import Limits, QueueState, decide_pull, uncovered

ROOMY = Limits(min_pilots=0, max_pilots=20, max_new_per_cycle=20, max_queued=20)


def test_a_pilot_busy_with_an_8_core_job_serves_no_other_8_core_job() -> None:
    # Given the only pilot, 8 slots and 8 cores, holding one 8-core job: 7 slots but no core
    # free; and an 8-core job waiting
    state = QueueState(
        activated=1, submitted=0, running=1, free_slots=7, slots_per_pilot=8,
        waiting_cores=8, free_cores=0,
    )  # fmt: skip
    # When the scaler decides
    d = decide_pull(ROOMY, state)
    # Then it launches a pilot for it, and says so in cores
    assert d.launch == 1
    assert "1 jobs waiting (8 cores), 8 cores without a free slot" in d.reason
    assert "1 running (0 cores free, 7 slots)" in d.reason


def test_multi_core_jobs_waiting_need_a_pilot_per_pilots_worth_of_cores() -> None:
    # Given eight 8-core jobs waiting and no pilot, pilots of 8 cores
    state = QueueState(8, 0, 0, slots_per_pilot=8, waiting_cores=64)
    # Then eight pilots: one per 8 cores (counting jobs, one pilot would take all eight)
    assert decide_pull(ROOMY, state).launch == 8
    # And a pilot launched already brings its 8 cores: one fewer
    queued = dataclasses.replace(state, submitted=1)
    assert decide_pull(ROOMY, queued).launch == 7


@pytest.mark.parametrize(
    ("state", "launch"),
    [
        # 2 x 8 + 4 x 1 cores waiting; 4 cores and 7 slots free: 16 cores short, 2 pilots
        (QueueState(6, 0, 1, free_slots=7, slots_per_pilot=8, waiting_cores=20, free_cores=4), 2),
        # the same work, 20 cores free on running pilots: covered
        (QueueState(6, 0, 3, free_slots=20, slots_per_pilot=8, waiting_cores=20, free_cores=20), 0),
        # 1-core jobs on a pilot of 2 slots and 8 cores (--slots 2): its slots bind, not its
        # cores (as before: free slots 0, 3 jobs waiting, one pilot of 8)
        (QueueState(3, 0, 1, free_slots=0, slots_per_pilot=8, waiting_cores=3, free_cores=6), 1),
        # 4-core jobs: five of them (20 cores) on pilots of 8: three pilots
        (QueueState(5, 0, 0, slots_per_pilot=8, waiting_cores=20), 3),
    ],
)
def test_mixed_work_launches_for_the_cores_or_the_slots_short(
    state: QueueState, launch: int
) -> None:
    assert decide_pull(ROOMY, state).launch == launch


def test_a_job_bigger_than_a_pilot_brings_only_its_cores_worth_of_pilots() -> None:
    # (The store leaves such a job out of the waiting work: no pilot of the queue takes it.
    # Were it counted, it could not make the scaler launch again and again:)
    # Given one 16-core job waiting on a queue of 8-core pilots
    state = QueueState(1, 0, 0, slots_per_pilot=8, waiting_cores=16)
    # Then two pilots at most, and none once they are queued, or running idle
    assert decide_pull(ROOMY, state).launch == 2
    assert decide_pull(ROOMY, dataclasses.replace(state, submitted=2)).launch == 0
    idle = dataclasses.replace(state, running=2, free_slots=16, free_cores=16)
    assert decide_pull(ROOMY, idle).launch == 0


def test_the_caps_hold_in_cores_too() -> None:
    # Given 100 8-core jobs waiting on 2 busy pilots, 5 new pilots a decision at most, 10 in all
    limits = Limits(min_pilots=0, max_pilots=10, max_new_per_cycle=5, max_queued=10)
    state = QueueState(100, 0, 2, slots_per_pilot=8, waiting_cores=800, free_cores=0)
    # Then 8 more are wanted, 5 launched now
    d = decide_pull(limits, state)
    assert d.launch == 5
    assert "100 jobs waiting (800 cores)" in d.reason
    assert "launch 5 of 8 wanted (capped by max_new_per_cycle 5)" in d.reason
    # And at max_pilots the rest wait
    full = decide_pull(limits, dataclasses.replace(state, running=10))
    assert full.launch == 0 and "max_pilots 10 reached" in full.reason


# --- properties -------------------------------------------------------------------------------

limits_st = st.builds(
    Limits, st.integers(0, 5), st.integers(0, 50), st.integers(1, 20), st.integers(1, 20)
).filter(lambda x: x.min_pilots <= x.max_pilots)


@st.composite
def states(draw: st.DrawFn) -> QueueState:
    """Multi-core states: each waiting job asks for 1 to 16 cores in all."""
    jobs = draw(st.integers(0, 300))
    return QueueState(
        activated=jobs,
        submitted=draw(st.integers(0, 30)),
        running=draw(st.integers(0, 60)),
        free_slots=draw(st.integers(0, 200)),
        slots_per_pilot=draw(st.integers(1, 16)),
        waiting_cores=draw(st.integers(jobs, 16 * jobs)),
        free_cores=draw(st.integers(0, 400)),
    )


@given(limits=limits_st, state=states())
def test_with_1_core_jobs_cores_decide_as_jobs_did(limits: Limits, state: QueueState) -> None:
    # Given 1-core work on pilots of one slot per core: cores waiting = jobs, free = slots
    one_core = dataclasses.replace(
        state, waiting_cores=state.activated, free_cores=state.free_slots
    )
    legacy = dataclasses.replace(state, waiting_cores=None, free_cores=None)
    # Then the decision, reason and all, is the one that counted jobs only
    assert decide_pull(limits, one_core) == decide_pull(limits, legacy)


@given(limits=limits_st, state=states(), more=st.integers(1, 100))
def test_more_cores_waiting_never_launch_fewer_and_more_free_never_more(
    limits: Limits, state: QueueState, more: int
) -> None:
    assert state.waiting_cores is not None and state.free_cores is not None
    base = decide_pull(limits, state).launch
    busier = dataclasses.replace(state, waiting_cores=state.waiting_cores + more)
    freer = dataclasses.replace(state, free_cores=state.free_cores + more)
    assert decide_pull(limits, busier).launch >= base
    assert decide_pull(limits, freer).launch <= base


@given(limits=limits_st, state=states())
def test_never_more_pilots_than_the_work_short_needs(limits: Limits, state: QueueState) -> None:
    # Launches beyond the minimum are at most one per `slots_per_pilot` cores (or slots) short
    d = decide_pull(limits, state)
    live = state.submitted + state.running
    for_work = -(-uncovered(state) // state.slots_per_pilot)
    assert d.launch <= max(for_work, limits.min_pilots - live, 0)
