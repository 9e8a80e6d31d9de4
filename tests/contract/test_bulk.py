"""JobStore.apply_bulk contract: a task-wide change (`domain.bulk.JobBulk`) applied by the store
exactly as the domain defines it. Every test runs against every backend in `conftest.BACKENDS`.

The domain is the reference: for each job, `JobBulk.selects` (given whether a parent of the
job is pending) says whether it changes and `JobBulk.apply` what it becomes; a store passes
by leaving every job as the domain would and counting the jobs it changed.
"""

from __future__ import annotations

from typing import Any

import pytest

from skypanda.domain.bulk import Action, JobBulk, plan
from skypanda.domain.jobflow import JobChange
from skypanda.domain.models import Job
from skypanda.domain.states import JOB_LIVE, JOB_QUEUED, JobStatus, TaskStatus
from skypanda.ports import Store
from tests.support import FakeClock

from .conftest import add_split_task, fits_all, make_task
from .helpers import add_jobs_with_parents, end_jobs, flagged, ids, report


def change(store: Store, job: Job, **update: Any) -> Job:
    """Write `update` to the stored job (compare-and-set) and return it as written."""
    after = job.model_copy(update=update)
    assert store.apply_job_changes([JobChange(job, after)]) == [True]
    return after


def mixed_task(store: Store, clock: FakeClock) -> dict[str, bool]:
    """Task t1 with a job in every state a bulk may meet, on queue q, and a second task t2
    (two activated jobs on q) a bulk of t1 must not touch. Returns, for each job of t1,
    whether a parent of it is pending.

    t1's jobs by index: 0 sent, 1 starting, 2 running, 3 running with its kill requested,
    4 finished, 5 failed, 6 activated, 7 cancelled, 8 closed, 9 defined waiting for a
    running parent, 10 defined whose parent finished (released), 11 activated already on q2
    with priority 7 and 3000 MB, 12 defined with no parent (held back by a pause).
    """
    done, running = add_jobs_with_parents(store, clock, "tp", [[], []], queue="other")
    parents: list[list[str]] = [[]] * 9 + [[running.id], [done.id], [], []]
    jobs = add_jobs_with_parents(store, clock, "t1", parents, max_attempts=1)
    end_jobs(store, clock, [done])
    store.release_children([done.id])
    held = store.claim_jobs("q", "p1", 6, fits_all(), clock.now())
    assert ids(held) == ids(jobs[:6])
    add_split_task(store, clock, 2, task_id="t2")
    starting = report(held[1], JobStatus.STARTING, clock)
    live = [report(held[i], JobStatus.RUNNING, clock) for i in (2, 3)]
    ended = [flagged(held[4], JobStatus.FINISHED, clock), flagged(held[5], JobStatus.FAILED, clock)]
    assert all(store.apply_job_changes([starting, *live, *ended]))
    change(store, live[1].after, kill_requested=True)
    change(store, jobs[7], status=JobStatus.CANCELLED, ended_at=clock.now())
    change(store, jobs[8], status=JobStatus.CLOSED, ended_at=clock.now())
    more = jobs[11].resources.model_copy(update={"memory_mb": 3000})
    change(store, jobs[11], queue="q2", priority=7, resources=more)
    change(store, jobs[12], status=JobStatus.DEFINED)
    stored = store.list_jobs("t1")
    assert [j.status for j in stored] == [
        JobStatus.SENT, JobStatus.STARTING, JobStatus.RUNNING, JobStatus.RUNNING,
        JobStatus.FINISHED, JobStatus.FAILED, JobStatus.ACTIVATED, JobStatus.CANCELLED,
        JobStatus.CLOSED, JobStatus.DEFINED, JobStatus.DEFINED, JobStatus.ACTIVATED,
        JobStatus.DEFINED,
    ]  # fmt: skip
    return {j.id: j.index == 9 for j in stored}


ACTIONS: dict[str, tuple[Action, dict[str, Any]]] = {
    "kill": (Action.KILL, {"reason": "killed by alice"}),
    "finish": (Action.FINISH, {"reason": "closed: task finished"}),
    "finish-hard": (Action.FINISH_HARD, {"reason": "closed: task finished (hard)"}),
    "pause": (Action.PAUSE, {}),
    "resume": (Action.RESUME, {}),
    "reassign": (Action.MOVE, {"queue": "q2"}),
    "priority": (Action.MOVE, {"priority": 7}),
    "reassign-and-priority": (Action.MOVE, {"queue": "q2", "priority": 7}),
    "raise-memory": (Action.RAISE_MEMORY, {"memory_mb": 3000}),
}


def expected(bulk: JobBulk, jobs: list[Job], pending: dict[str, bool], now: float) -> list[Job]:
    """`jobs` as the domain says `bulk` leaves them."""
    return [
        bulk.apply(j, now) if bulk.selects(j, parent_pending=pending[j.id]) else j for j in jobs
    ]


@pytest.mark.parametrize("name", list(ACTIONS))
def test_every_action_changes_exactly_the_jobs_the_domain_selects_as_the_domain_says(
    store: Store, clock: FakeClock, name: str
) -> None:
    # Given a task with a job in every state, and another task on the same queue
    pending = mixed_task(store, clock)
    others = store.list_jobs("t2") + store.list_jobs("tp")
    action, args = ACTIONS[name]

    # When each bulk of the action is applied to the whole task, in order
    for bulk in plan(action, "t1", args):
        clock.advance(10)
        before = store.list_jobs("t1")
        want = expected(bulk, before, pending, clock.now())
        changed = store.apply_bulk(bulk, clock.now())

        # Then each job is as the domain says (updated_at, and ended_at when it ends, now),
        # and the count is of the jobs that changed
        assert store.list_jobs("t1") == want
        assert changed == sum(a != b for a, b in zip(before, want, strict=True))

    # And no other task's job was touched
    assert store.list_jobs("t2") + store.list_jobs("tp") == others


@pytest.mark.parametrize("name", list(ACTIONS))
def test_applying_an_action_again_changes_nothing(
    store: Store, clock: FakeClock, name: str
) -> None:
    # Given a task with a job in every state, after an action was applied
    mixed_task(store, clock)
    action, args = ACTIONS[name]
    bulks = plan(action, "t1", args)
    for bulk in bulks:
        store.apply_bulk(bulk, clock.now())
    after = store.list_jobs("t1")

    # When the same bulks are applied again later (a redelivered page)
    clock.advance(60)
    again = [store.apply_bulk(bulk, clock.now()) for bulk in bulks]

    # Then nothing changes, not even a job's updated_at
    assert again == [0] * len(bulks)
    assert store.list_jobs("t1") == after


def test_a_bulk_with_a_transition_and_a_field_writes_both_and_only_raises_memory(
    store: Store, clock: FakeClock
) -> None:
    # Given a task of 3 activated jobs, one of which already asks for 3000 MB
    jobs = add_split_task(store, clock, 3)
    more = jobs[2].resources.model_copy(update={"memory_mb": 3000})
    jobs[2] = change(store, jobs[2], resources=more)

    # When a bulk moves them back to defined and raises their memory to 2500 MB
    bulk = JobBulk("t1", frozenset({JobStatus.ACTIVATED}), to=JobStatus.DEFINED, memory_mb=2500)
    clock.advance(1)
    changed = store.apply_bulk(bulk, clock.now())

    # Then all three are defined; two ask for 2500 MB, the third keeps its 3000 MB
    assert changed == 3
    assert store.list_jobs("t1") == [bulk.apply(j, clock.now()) for j in jobs]
    assert [j.resources.memory_mb for j in store.list_jobs("t1")] == [2500, 2500, 3000]


def test_an_index_range_changes_only_the_jobs_in_it(store: Store, clock: FakeClock) -> None:
    # Given a task of 10 activated jobs
    add_split_task(store, clock, 10)
    (close,) = plan(Action.FINISH, "t1", {"reason": "closed"})

    # When jobs 3 to 6 are closed (first_index 3, count 4)
    assert store.apply_bulk(close, clock.now(), first_index=3, count=4) == 4

    # Then only they are closed
    closed = [j.index for j in store.list_jobs("t1", status=JobStatus.CLOSED)]
    assert closed == [3, 4, 5, 6]
    # And an empty range, or one past the last job, changes nothing
    assert store.apply_bulk(close, clock.now(), first_index=0, count=0) == 0
    assert store.apply_bulk(close, clock.now(), first_index=10, count=5) == 0
    # And pages of 3 over every index close the others, each page once
    pages = [store.apply_bulk(close, clock.now(), first_index=f, count=3) for f in (0, 3, 6, 9)]
    assert pages == [3, 0, 2, 1]
    assert store.job_counts("t1") == {JobStatus.CLOSED: 10}


def test_a_range_without_count_runs_from_first_index_to_the_last_job(
    store: Store, clock: FakeClock
) -> None:
    add_split_task(store, clock, 5)
    (pause,) = plan(Action.PAUSE, "t1", {})
    assert store.apply_bulk(pause, clock.now(), first_index=2) == 3
    defined = store.list_jobs("t1", status=JobStatus.DEFINED)
    assert [j.index for j in defined] == [2, 3, 4]
    assert store.apply_bulk(pause, clock.now()) == 2
    assert store.job_counts("t1") == {JobStatus.DEFINED: 5}


def test_resume_activates_only_jobs_none_of_whose_parents_is_pending(
    store: Store, clock: FakeClock
) -> None:
    # Given parents p0 and p1 (task tp, queue other), and a paused task tc whose jobs wait
    # for p0, for p1, for both, and for none
    p0, p1 = add_jobs_with_parents(store, clock, "tp", [[], []], queue="other")
    children = add_jobs_with_parents(store, clock, "tc", [[p0.id], [p1.id], ids([p0, p1]), []])
    (pause,) = plan(Action.PAUSE, "tc", {})
    assert store.apply_bulk(pause, clock.now()) == 1  # the one without parents
    (resume,) = plan(Action.RESUME, "tc", {})

    # When p0 finishes and is released, and the task is resumed
    end_jobs(store, clock, [p0])
    store.release_children([p0.id])
    resumed = store.apply_bulk(resume, clock.now())

    # Then the jobs waiting for nothing pending are activated: p0's child and the root
    assert resumed == 2
    activated = store.list_jobs("tc", status=JobStatus.ACTIVATED)
    assert ids(activated) == ids([children[0], children[3]])

    # When p1 finishes and is released too, Then a resume activates the two others, once
    end_jobs(store, clock, [p1])
    store.release_children([p1.id])
    assert store.apply_bulk(resume, clock.now()) == 2
    assert store.apply_bulk(resume, clock.now()) == 0
    assert store.job_counts("tc") == {JobStatus.ACTIVATED: 4}


def test_a_kill_flags_each_live_job_once(store: Store, clock: FakeClock) -> None:
    # Given a task of 3 jobs held by p1, one of them flagged already
    add_split_task(store, clock, 3)
    held = store.claim_jobs("q", "p1", 3, fits_all(), clock.now())
    change(store, held[0], kill_requested=True)
    kill_live = JobBulk("t1", JOB_LIVE, kill=True)

    # When the live jobs are flagged, Then the two others are; and only once
    assert store.apply_bulk(kill_live, clock.now()) == 2
    assert store.apply_bulk(kill_live, clock.now()) == 0
    assert sorted(store.jobs_to_kill("p1")) == sorted(ids(held))


def test_a_bulk_of_an_unknown_or_unsplit_task_changes_nothing(
    store: Store, clock: FakeClock
) -> None:
    store.add_task(make_task(clock, 3, task_id="unsplit"), [])
    for task_id in ("nope", "unsplit"):
        cancel = JobBulk(task_id, JOB_QUEUED, to=JobStatus.CANCELLED, reason="x")
        assert store.apply_bulk(cancel, clock.now()) == 0
        assert store.apply_bulk(cancel, clock.now(), first_index=0, count=10) == 0


def test_bulk_page_is_none_or_a_positive_page_size(store: Store) -> None:
    page = store.bulk_page
    assert page is None or page >= 1


def test_a_paused_task_stays_as_it_is_for_the_bulk(store: Store, clock: FakeClock) -> None:
    # Bulks change jobs only: the task's own status is the caller's (set_task_status)
    add_split_task(store, clock, 2)
    (pause,) = plan(Action.PAUSE, "t1", {})
    store.apply_bulk(pause, clock.now())
    assert store.get_task("t1").status is TaskStatus.READY
