"""Task actions (`domain.bulk.plan`) carried out through the store as the handlers do it
(`helpers.apply_action`: the task moved compare-and-set, then each bulk page by page): what a
user sees of kill, finish, pause, resume, reassign and a memory raise, on every backend."""

from __future__ import annotations

import pytest

from skypanda.domain.bulk import Action
from skypanda.domain.jobflow import JobChange
from skypanda.domain.states import (
    JobStatus,
    TaskStatus,
)
from skypanda.ports import Store
from tests.support import FakeClock

from .conftest import (
    add_split_task,
    fits_all,
    make_jobs,
    make_task,
)
from .helpers import (
    apply_action,
    claim_all,
    ids,
    kill,
    report,
)

# --- kill ----------------------------------------------------------------------------------------


def test_kill_cancels_queued_jobs_and_flags_live_ones_for_their_pilots(
    store: Store, clock: FakeClock
) -> None:
    # Given a task of four jobs: p1 holds two (one running), two are still activated
    jobs = add_split_task(store, clock, 4)
    held = store.claim_jobs("q", "p1", 2, fits_all(), clock.now())
    store.apply_job_changes([report(held[0], JobStatus.RUNNING, clock)])
    assert store.jobs_to_kill("p1") == []

    # When the task is killed
    clock.advance(2)
    changed = kill(store, "t1", "user asked", now=clock.now())

    # Then the task is aborted with the reason; queued jobs are cancelled with it, ended now;
    # the live jobs stay live (their pilots end them) but are flagged, and p1 is told to kill
    # them
    assert changed == 4
    task = store.get_task("t1")
    assert (task.status, task.reason) == (TaskStatus.ABORTED, "user asked")
    queued = [j for j in jobs if j.id not in {h.id for h in held}]
    for job in store.get_jobs(ids(queued)).values():
        assert (job.status, job.error_diag, job.ended_at) == (
            JobStatus.CANCELLED,
            "user asked",
            clock.t,
        )
    live = store.live_jobs_of_pilot("p1")
    assert {j.id for j in live} == {h.id for h in held}
    assert all(j.kill_requested for j in live)
    assert sorted(store.jobs_to_kill("p1")) == sorted(h.id for h in held)
    assert store.jobs_to_kill("p2") == []
    # And killing it again (a redelivered page) changes nothing
    assert apply_action(store, "t1", Action.KILL, {"reason": "again"}, now=clock.now()) == 0


def test_a_killed_job_that_ended_is_no_longer_to_be_killed(store: Store, clock: FakeClock) -> None:
    # Given a killed task whose live job p1 holds
    add_split_task(store, clock, 1)
    [job] = claim_all(store, clock)
    kill(store, "t1", "user", now=clock.now())
    [flagged] = store.live_jobs_of_pilot("p1")

    # When the pilot reports the job failed (it killed it)
    store.apply_job_changes([report(flagged, JobStatus.FAILED, clock)])

    # Then there is nothing left to kill, and the job was cancelled rather than retried
    assert store.jobs_to_kill("p1") == []
    assert store.get_job(job.id).status is JobStatus.CANCELLED


# --- finish --------------------------------------------------------------------------------------


@pytest.mark.parametrize("hard", [False, True], ids=["soft", "hard"])
def test_finish_closes_queued_jobs_and_hard_also_flags_live_ones(
    store: Store, clock: FakeClock, hard: bool
) -> None:
    # Given a task of 4 jobs, one taken by a pilot
    jobs = add_split_task(store, clock, 4)
    (taken,) = store.claim_jobs("q", "p1", 1, fits_all(), clock.now())

    # When the task is finished
    action = Action.FINISH_HARD if hard else Action.FINISH
    clock.advance(3)
    changed = apply_action(store, "t1", action, {"reason": "finished by user"}, now=clock.now())

    # Then the 3 queued jobs are closed with the reason, and the live one runs on, or is
    # flagged for its pilot to kill when the finish is hard
    assert changed == (4 if hard else 3)
    stored = store.get_jobs(ids(jobs))
    for job in stored.values():
        if job.id == taken.id:
            assert job.status is JobStatus.SENT and job.kill_requested is hard
        else:
            assert job.status is JobStatus.CLOSED and job.error_diag == "finished by user"
            assert job.ended_at == clock.t
    assert store.jobs_to_kill("p1") == ([taken.id] if hard else [])
    assert store.count_activated("q") == 0
    # And finishing again closes nothing more
    assert apply_action(store, "t1", action, {"reason": "again"}, now=clock.now()) == 0


# --- pause and resume ----------------------------------------------------------------------------


def test_pause_holds_activated_jobs_back_and_resume_releases_those_not_waiting(
    store: Store, clock: FakeClock
) -> None:
    # Given a task of 3 jobs, one taken, and a child job (of another task) waiting for one
    jobs = add_split_task(store, clock, 3)
    (taken,) = store.claim_jobs("q", "p1", 1, fits_all(), clock.now())
    child_task = make_task(clock, 1, task_id="tc")
    store.add_task(child_task, [])
    (child,) = make_jobs(child_task, clock.now())
    waiting = child.model_copy(update={"status": JobStatus.DEFINED, "parents": [taken.id]})
    assert store.add_jobs("tc", [waiting], expect=TaskStatus.REGISTERED, to=TaskStatus.READY)

    # When the task is paused, Then its 2 activated jobs are held back (no pilot gets them)
    paused = TaskStatus.PAUSED
    assert apply_action(store, "t1", Action.PAUSE, now=clock.now(), to=paused) == 2
    assert store.get_task("t1").status is paused
    assert store.claim_jobs("q", "p2", 5, fits_all(), clock.now()) == []
    stored = store.get_jobs(ids(jobs))
    assert stored[taken.id].status is JobStatus.SENT  # a running job goes on
    assert {stored[j.id].status for j in jobs if j.id != taken.id} == {JobStatus.DEFINED}

    # When it is resumed, Then they are activated again; the child still waits for its parent
    running = TaskStatus.RUNNING
    assert apply_action(store, "t1", Action.RESUME, now=clock.now(), to=running) == 2
    assert apply_action(store, "tc", Action.RESUME, now=clock.now()) == 0
    assert store.count_activated("q") == 2
    assert store.get_job(waiting.id).status is JobStatus.DEFINED


# --- reassign and priority -----------------------------------------------------------------------


def test_reassign_moves_queued_jobs_and_sets_their_priority(store: Store, clock: FakeClock) -> None:
    # Given a task of 3 jobs on queue q, one already taken
    jobs = add_split_task(store, clock, 3)
    (taken,) = store.claim_jobs("q", "p1", 1, fits_all(), clock.now())

    # When its queued jobs are moved to q2 with priority 7
    move = {"queue": "q2", "priority": 7}
    assert apply_action(store, "t1", Action.MOVE, move, now=clock.now()) == 2

    # Then they are dispatched from q2 (highest priority first), the taken job stays as it was
    assert store.count_activated("q") == 0 and store.count_activated("q2") == 2
    stored = store.get_jobs(ids(jobs))
    assert stored[taken.id].queue == "q" and stored[taken.id].priority == 0
    moved = [j for j in stored.values() if j.id != taken.id]
    assert {(j.queue, j.priority) for j in moved} == {("q2", 7)}
    # And a priority-only change keeps the queue; the same move again changes nothing
    assert apply_action(store, "t1", Action.MOVE, {"priority": -1}, now=clock.now()) == 2
    assert apply_action(store, "t1", Action.MOVE, {"priority": -1}, now=clock.now()) == 0
    assert {j.queue for j in store.get_jobs(ids(moved)).values()} == {"q2"}
    claimed = store.claim_jobs("q2", "p2", 5, fits_all(), clock.now())
    assert {j.id for j in claimed} == {j.id for j in moved}


# --- memory --------------------------------------------------------------------------------------


def test_jobs_above_a_memory_request_are_counted_and_queued_ones_raised(
    store: Store, clock: FakeClock
) -> None:
    # Given a task of 4 jobs of 2000 MB; one ran out of memory and was requeued asking 3000 MB
    jobs = add_split_task(store, clock, 4)
    (taken,) = store.claim_jobs("q", "p1", 1, fits_all(), clock.now())
    more = taken.resources.model_copy(update={"memory_mb": 3000})
    retried = taken.model_copy(
        update={"status": JobStatus.ACTIVATED, "attempt": 2, "pilot_id": None, "resources": more}
    )
    assert store.apply_job_changes([JobChange(taken, retried)]) == [True]

    # Then one job asks for more than 2000 MB
    assert store.count_jobs_above_memory("t1", 2000) == 1
    # When the task's queued jobs are raised to 3000 MB, Then the other three are
    raise_to = {"memory_mb": 3000}
    assert apply_action(store, "t1", Action.RAISE_MEMORY, raise_to, now=clock.now()) == 3
    stored = store.get_jobs(ids(jobs))
    assert {j.resources.memory_mb for j in stored.values()} == {3000}
    assert store.count_jobs_above_memory("t1", 2000) == 4
    assert apply_action(store, "t1", Action.RAISE_MEMORY, raise_to, now=clock.now()) == 0
    # And a lower request lowers nothing
    lower = {"memory_mb": 2500}
    assert apply_action(store, "t1", Action.RAISE_MEMORY, lower, now=clock.now()) == 0
