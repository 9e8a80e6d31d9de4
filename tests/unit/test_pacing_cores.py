"""A pilot takes only jobs whose cores it has free, once a payload runs long: the pure decisions
(`pacing.acquire_plan`, `pacing.cores_give_back`), with 1-core jobs paced as before, then the
registry giving back a job whose worker waits for cores a long payload holds."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skypanda.pilot.held import Cores, HeldJob, Registry, cores_held, take_back
from skypanda.pilot.pacing import (
    GIVE_BACK_AFTER_S,
    PREFETCH_BELOW_S,
    acquire_plan,
    acquire_size,
    cores_give_back,
    give_back_count,
)

LONG = 10 * PREFETCH_BELOW_S

# --- what to ask for --------------------------------------------------------------------------


def _plan(held: int, held_cores: int, *, cores: int = 8, slots: int = 8, **kw: float) -> Any:
    args: dict[str, Any] = {"mean_runtime_s": None, "longest_running_s": LONG, **kw}
    return acquire_plan(
        held=held, slots=slots, per_acquire=2 * slots, remaining=None, cores=cores,
        held_cores=held_cores, **args,
    )  # fmt: skip


def test_a_pilot_whose_cores_a_long_payload_holds_asks_for_nothing() -> None:
    # Given an 8-core pilot running one 8-core job that has run long (7 slots free)
    # Then it asks for no job at all (no acquire, no long-poll): it has no core free
    assert _plan(held=1, held_cores=8) == (0, None)
    # (before, by its slots alone, it asked for 7)
    assert acquire_size(
        held=1, slots=8, per_acquire=16, mean_runtime_s=None, remaining=None,
        longest_running_s=LONG,
    ) == 7  # fmt: skip


def test_a_pilot_asks_only_for_jobs_that_fit_its_free_cores() -> None:
    # Given an 8-core pilot running a 6-core job long: at most 2 jobs, of 2 cores at most
    assert _plan(held=1, held_cores=6) == (2, 2)
    # And running a 2-core job: up to 6 jobs of up to 6 cores
    assert _plan(held=1, held_cores=2) == (6, 6)
    # And with nothing held, all its cores (the server's default)
    assert _plan(held=0, held_cores=0) == (8, 8)


def test_the_prefetch_of_short_jobs_is_unchanged() -> None:
    # Given recent jobs short and no payload past PREFETCH_BELOW_S: the prefetch, whatever
    # the cores held (short jobs free them sooner than an acquire's round trip)
    n, max_cores = _plan(held=1, held_cores=8, mean_runtime_s=0.05, longest_running_s=0.01)
    assert (n, max_cores) == (16, None)


size_args = st.fixed_dictionaries(
    {
        "held": st.integers(0, 100),
        "slots": st.integers(1, 16),
        "per_acquire": st.integers(1, 64),
        "mean_runtime_s": st.none() | st.floats(0.0, 10.0),
        "remaining": st.none() | st.integers(0, 100),
        "longest_running_s": st.floats(0.0, 10.0),
    }
)


@given(args=size_args, extra=st.integers(0, 8))
def test_one_core_jobs_ask_for_as_many_as_before(args: dict[str, Any], extra: int) -> None:
    # Given 1-core jobs only, on a pilot with a core per slot (or more: --slots above --cores
    # gives each slot a core of the gate), the jobs held each holding one
    cores = args["slots"] + extra
    n, _ = acquire_plan(**args, cores=cores, held_cores=args["held"])
    # Then the pilot asks for exactly as many jobs as by its slots alone
    assert n == acquire_size(**args)


@pytest.mark.parametrize(
    ("waiting", "running", "slots", "longest", "back"),
    [  # every case of the slot-based give-back (tests/unit/test_free_slots.py)
        (3, 1, 1, GIVE_BACK_AFTER_S, 3),
        (3, 1, 2, GIVE_BACK_AFTER_S, 2),
        (3, 1, 1, GIVE_BACK_AFTER_S / 2, 0),
        (0, 1, 1, 100.0, 0),
        (2, 0, 4, 100.0, 0),
    ],
)
def test_one_core_jobs_are_given_back_as_before(
    waiting: int, running: int, slots: int, longest: float, back: int
) -> None:
    # Given 1-core jobs, a core per slot: the cores give back no more than the slots do
    assert give_back_count(
        waiting=waiting, running=running, slots=slots, longest_running_s=longest
    ) == back  # fmt: skip
    by_cores = cores_give_back(
        waiting_cores=[1] * waiting, free_cores=slots - running, longest_running_s=longest
    )
    assert len(by_cores) <= back
    assert by_cores == list(range(waiting - len(by_cores), waiting))  # the last ones


# --- what to give back ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("waiting", "free", "longest", "back"),
    [
        ([8], 0, GIVE_BACK_AFTER_S, [0]),  # the long payload holds every core
        ([8], 0, GIVE_BACK_AFTER_S / 2, []),  # it may still be short: keep it
        ([2, 2], 2, GIVE_BACK_AFTER_S, [1]),  # one fits the free cores, the next does not
        ([4, 1], 1, GIVE_BACK_AFTER_S, [0]),  # a smaller one behind a big one still fits
        ([1, 1], 4, GIVE_BACK_AFTER_S, []),
    ],
)
def test_give_back_the_jobs_waiting_for_cores_a_long_payload_holds(
    waiting: list[int], free: int, longest: float, back: list[int]
) -> None:
    assert cores_give_back(waiting_cores=waiting, free_cores=free, longest_running_s=longest) == (
        back
    )


def _job(i: int, cores: int) -> HeldJob:
    return HeldJob({"id": f"j{i}", "attempt": 1, "resources": {"cores": cores}})


def test_a_job_whose_worker_waits_for_cores_is_given_back_and_never_runs() -> None:
    # Given a 2-core pilot with two workers: a 2-core payload running, and a 2-core job whose
    # worker waits in the cores' gate (its future runs: it cannot be cancelled)
    registry, cores = Registry(on_empty=lambda: None), Cores(2)
    running, release, in_gate = threading.Event(), threading.Event(), threading.Event()
    ran: list[str] = []

    def in_the_gate() -> bool:  # the gate asks whether to stop while the job waits in it
        in_gate.set()
        return False

    def work(held: HeldJob) -> None:
        if cores.take(held, abort=in_the_gate) is None:
            return
        ran.append(held.id)
        running.set()
        release.wait(30)
        cores.give(cores.need(held.cores))

    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = _job(0, 2), _job(1, 2)
        registry.add(first)
        first.future = pool.submit(work, first)
        assert running.wait(30)
        in_gate.clear()
        registry.add(second)
        second.future = pool.submit(work, second)
        assert in_gate.wait(30)
        assert cores_held(registry, cores) == 4
        # While the payload is young, nothing goes back (the slots do not say so either)
        assert take_back(registry, slots=2, cores=cores) == []
        # When it has run past the give-back threshold
        assert first.started_at is not None
        first.started_at -= GIVE_BACK_AFTER_S + 1
        back = take_back(registry, slots=2, cores=cores)
        # Then the waiting job is given back, and its worker leaves without running it
        assert back == [second] and second.given_back
        second.future.result(timeout=30)
        release.set()
    assert ran == ["j0"]
    # And a job that took its cores cannot be withdrawn
    assert not cores.withdraw(first)
