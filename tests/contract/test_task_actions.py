"""Store contract for task actions (finish, reassign, priority), on SQLite and Firestore."""

from __future__ import annotations

import pytest

from skypanda.domain import events as ev
from skypanda.domain.fairshare import OwnerLoad
from skypanda.domain.states import JobStatus, TaskStatus
from skypanda.ports import JobChange, Store

from .conftest import FakeClock, add_split_task, fits_all, make_jobs, make_task


@pytest.mark.parametrize("hard", [False, True], ids=["soft", "hard"])
def test_finish_closes_queued_jobs_and_hard_also_flags_live_ones(
    store: Store, clock: FakeClock, hard: bool
) -> None:
    # Given a task of 4 jobs, one taken by a pilot
    jobs = add_split_task(store, clock, 4)
    (taken,) = store.claim_jobs("q", "p1", 1, fits_all(), clock.now())

    # When the task is finished
    closed = store.finish_task("t1", "finished by user", hard=hard)

    # Then the 3 queued jobs are closed with the reason, and the live one runs on, or is
    # flagged for its pilot to kill when the finish is hard
    assert closed == 3
    stored = store.get_jobs([j.id for j in jobs])
    for job in stored.values():
        if job.id == taken.id:
            assert job.status is JobStatus.SENT and job.kill_requested is hard
        else:
            assert job.status is JobStatus.CLOSED and job.error_diag == "finished by user"
            assert job.ended_at is not None
    assert store.jobs_to_kill("p1") == ([taken.id] if hard else [])
    assert store.count_activated("q") == 0
    # And finishing again closes nothing more
    assert store.finish_task("t1", "again", hard=hard) == 0


def test_reassign_moves_queued_jobs_and_sets_their_priority(store: Store, clock: FakeClock) -> None:
    # Given a task of 3 jobs on queue q, one already taken
    jobs = add_split_task(store, clock, 3)
    (taken,) = store.claim_jobs("q", "p1", 1, fits_all(), clock.now())

    # When its queued jobs are moved to q2 with priority 7
    assert store.reassign_jobs("t1", queue="q2", priority=7) == 2

    # Then they are dispatched from q2 (highest priority first), the taken job stays as it was
    assert store.count_activated("q") == 0 and store.count_activated("q2") == 2
    stored = store.get_jobs([j.id for j in jobs])
    assert stored[taken.id].queue == "q" and stored[taken.id].priority == 0
    moved = [j for j in stored.values() if j.id != taken.id]
    assert {(j.queue, j.priority) for j in moved} == {("q2", 7)}
    # And a priority-only change keeps the queue
    assert store.reassign_jobs("t1", queue=None, priority=-1) == 2
    assert {j.queue for j in store.get_jobs([j.id for j in moved]).values()} == {"q2"}
    claimed = store.claim_jobs("q2", "p2", 5, fits_all(), clock.now())
    assert {j.id for j in claimed} == {j.id for j in moved}


def test_claims_by_owner_and_owner_loads(store: Store, clock: FakeClock) -> None:
    # Given alice's task of 5 jobs and bob's of 2 on queue q, one of alice's taken
    add_split_task(store, clock, 5, task_id="ta", owner="alice")
    add_split_task(store, clock, 2, task_id="tb", owner="bob")
    store.claim_jobs("q", "p0", 1, fits_all(), clock.now(), owner="alice")

    # Then the loads say who runs and who waits
    loads = store.owner_loads("q")
    assert loads == {"alice": OwnerLoad(1, 4), "bob": OwnerLoad(0, 2)}
    assert store.owner_loads("elsewhere") == {}

    # And a claim for bob takes only bob's jobs, even when asking for more
    got = store.claim_jobs("q", "p1", 5, fits_all(), clock.now(), owner="bob")
    assert [j.owner for j in got] == ["bob", "bob"]
    assert store.owner_loads("q") == {"alice": OwnerLoad(1, 4), "bob": OwnerLoad(2, 0)}


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
    assert store.pause_jobs("t1") == 2
    assert store.claim_jobs("q", "p2", 5, fits_all(), clock.now()) == []
    stored = store.get_jobs([j.id for j in jobs])
    assert stored[taken.id].status is JobStatus.SENT  # a running job goes on
    assert {stored[j.id].status for j in jobs if j.id != taken.id} == {JobStatus.DEFINED}

    # When it is resumed, Then they are activated again; the child still waits for its parent
    assert store.resume_jobs("t1") == 2
    assert store.resume_jobs("tc") == 0
    assert store.count_activated("q") == 2
    assert store.get_job(waiting.id).status is JobStatus.DEFINED


def test_place_task_sets_a_registered_tasks_spec_once_with_its_events(
    store: Store, clock: FakeClock
) -> None:
    # Given a pending task (registered, no queue yet)
    task = make_task(clock, 2, task_id="tp", queue="auto").model_copy(
        update={"reason": "pending: no queue fits"}
    )
    store.add_task(task, [])

    # When brokerage places it on q2, Then its spec names q2, its reason is cleared, and the
    # event is emitted with the change
    placed = task.spec.model_copy(update={"queue": "q2"})
    assert store.place_task("tp", placed, [ev.task_registered("tp")])
    stored = store.get_task("tp")
    assert (stored.spec.queue, stored.reason, stored.status) == ("q2", "", TaskStatus.REGISTERED)
    assert [e.event.id for e in store.pending_events(10)] == ["task-registered:tp"]

    # And once the task has moved on (split), placing it again loses
    assert store.set_task_status("tp", [TaskStatus.REGISTERED], TaskStatus.FAILED)
    assert not store.place_task("tp", placed.model_copy(update={"queue": "q3"}), [])
    assert store.get_task("tp").spec.queue == "q2"


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
    assert store.raise_queued_memory("t1", 3000) == 3
    stored = store.get_jobs([j.id for j in jobs])
    assert {j.resources.memory_mb for j in stored.values()} == {3000}
    assert store.count_jobs_above_memory("t1", 2000) == 4
    assert store.raise_queued_memory("t1", 3000) == 0
