"""TaskStore contract (`skypanda.ports.tasks`): tasks stored, read, moved compare-and-set, split
into jobs, counted. Every test runs against every backend in `conftest.BACKENDS`."""

from __future__ import annotations

import pytest

from skypanda.domain import events as ev
from skypanda.domain.errors import IllegalTransition, InvalidInput, NotFound
from skypanda.domain.jobflow import new_job
from skypanda.domain.models import (
    JobSpec,
    Resources,
)
from skypanda.domain.quota import Usage
from skypanda.domain.states import (
    TASK_FINAL,
    JobStatus,
    TaskStatus,
)
from skypanda.ports import Store
from tests.support import FakeClock

from .conftest import (
    Backend,
    ClosableStore,
    add_split_task,
    fits_all,
    make_jobs,
    make_task,
)
from .helpers import (
    claim_all,
    event,
    flagged,
    kill,
    pending_ids,
    report,
)

# --- tasks ---------------------------------------------------------------------------------------


def test_add_task_then_get_task_returns_it(store: Store, clock: FakeClock) -> None:
    # Given a new task
    task = make_task(clock, 3, priority=7, env={"A": "1"}, resources=Resources(memory_mb=500))

    # When it is added and read back
    store.add_task(task, [])

    # Then it reads back as it was written, with no jobs counted yet
    assert store.get_task(task.id) == task
    assert store.get_task(task.id).job_counts == {}


def test_get_task_fills_job_counts(store: Store, clock: FakeClock) -> None:
    # Given a task split into three jobs, one of which a pilot claimed
    add_split_task(store, clock, 3)
    store.claim_jobs("q", "p1", 1, fits_all(), clock.now())

    # When the task is read
    task = store.get_task("t1")

    # Then its job counts are by status
    assert task.job_counts == {"activated": 2, "sent": 1}


def test_get_task_of_an_unknown_id_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_task("nope")


def test_add_task_with_an_existing_id_raises_invalid_input_and_writes_nothing(
    store: Store, clock: FakeClock
) -> None:
    # Given a stored task
    first = make_task(clock, 3)
    store.add_task(first, [])

    # When another task with the same id is added, with an event
    clock.advance(5)
    with pytest.raises(InvalidInput):
        store.add_task(make_task(clock, 9), [ev.task_registered(first.id)])

    # Then the first task is untouched and the second one's event was not stored
    assert store.get_task(first.id) == first
    assert store.pending_events(10) == []


def test_events_given_to_add_task_land_in_the_outbox(store: Store, clock: FakeClock) -> None:
    # Given a task and its registration event
    task = make_task(clock)
    registered = ev.task_registered(task.id)

    # When the task is added with the event
    store.add_task(task, [registered])

    # Then the event is pending delivery, never tried
    [stored] = store.pending_events(10)
    assert stored.event == registered
    assert stored.tries == 0


def test_list_tasks_is_most_recent_first(store: Store, clock: FakeClock) -> None:
    # Given three tasks created one after the other
    for name in ("a", "b", "c"):
        store.add_task(make_task(clock, task_id=name), [])
        clock.advance(1)

    # When they are listed
    # Then the newest comes first, and the limit is respected
    assert [t.id for t in store.list_tasks()] == ["c", "b", "a"]
    assert [t.id for t in store.list_tasks(limit=2)] == ["c", "b"]


def test_owner_usage_counts_the_owner_s_unended_tasks_and_their_jobs(
    store: Store, clock: FakeClock
) -> None:
    # Given alice's tasks in every state (each of 10 jobs but one of 7), and bob's task
    for i, status in enumerate(TaskStatus):
        store.add_task(make_task(clock, 10, task_id=f"a{i}", status=status, owner="alice"), [])
    store.add_task(make_task(clock, 7, task_id="a-small", owner="alice"), [])
    store.add_task(make_task(clock, 1000, task_id="b1", owner="bob"), [])
    # Then alice's usage is her tasks not ended, and their jobs (bob's are his own)
    unended = [s for s in TaskStatus if s not in TASK_FINAL]
    assert len(unended) == 5  # pending, registered, ready, running, paused
    assert store.owner_usage("alice") == Usage(tasks=6, jobs=10 * 5 + 7)
    assert store.owner_usage("bob") == Usage(tasks=1, jobs=1000)
    assert store.owner_usage("carol") == Usage(tasks=0, jobs=0)
    # And a task that ends leaves it
    assert store.set_task_status("a-small", [TaskStatus.REGISTERED], TaskStatus.FAILED)
    assert store.owner_usage("alice") == Usage(tasks=5, jobs=50)


def test_tasks_and_jobs_survive_a_restart(
    backend: Backend, store: ClosableStore, clock: FakeClock
) -> None:
    jobs = add_split_task(store, clock, 3)
    task = store.get_task("t1")
    store.close()
    reopened = backend.open()
    assert reopened.get_task("t1") == task
    assert reopened.list_jobs("t1") == jobs


# --- set_task_status -----------------------------------------------------------------------------


def test_set_task_status_wins_from_an_expected_state(store: Store, clock: FakeClock) -> None:
    # Given a registered task
    store.add_task(make_task(clock), [])

    # When it is moved from registered (expected) to failed, with an event
    clock.advance(3)
    won = store.set_task_status(
        "t1", [TaskStatus.REGISTERED], TaskStatus.FAILED, reason="bad split", events=[event(1)]
    )

    # Then the write wins, the task is failed with the reason and the event is pending
    assert won is True
    task = store.get_task("t1")
    assert (task.status, task.reason, task.updated_at) == (TaskStatus.FAILED, "bad split", clock.t)
    assert pending_ids(store) == ["e1"]


def test_set_task_status_loses_from_another_state_and_changes_nothing(
    store: Store, clock: FakeClock
) -> None:
    # Given a task that is already ready
    add_split_task(store, clock)
    before = store.get_task("t1")

    # When a writer that expects it registered tries to fail it, with an event
    won = store.set_task_status(
        "t1", [TaskStatus.REGISTERED], TaskStatus.FAILED, reason="late", events=[event(1)]
    )

    # Then the write loses: the task is unchanged and the event was not stored
    assert won is False
    assert store.get_task("t1") == before
    assert store.pending_events(10) == []


def test_set_task_status_accepts_any_of_several_expected_states(
    store: Store, clock: FakeClock
) -> None:
    # Given a ready task
    add_split_task(store, clock)

    # When it is moved to done from "ready or running"
    won = store.set_task_status("t1", [TaskStatus.READY, TaskStatus.RUNNING], TaskStatus.DONE)

    # Then the write wins
    assert won is True
    assert store.get_task("t1").status is TaskStatus.DONE


def test_set_task_status_to_a_state_the_machine_forbids_raises_illegal_transition(
    store: Store, clock: FakeClock
) -> None:
    # Given a registered task
    store.add_task(make_task(clock), [])

    # When it is asked to go from registered straight to done (not an edge of the machine)
    # Then the store refuses, and the task stays registered
    with pytest.raises(IllegalTransition):
        store.set_task_status("t1", [TaskStatus.REGISTERED], TaskStatus.DONE)
    assert store.get_task("t1").status is TaskStatus.REGISTERED


# --- place_task ----------------------------------------------------------------------------------


def test_place_task_registers_a_pending_task_on_its_queue_once_with_its_events(
    store: Store, clock: FakeClock
) -> None:
    # Given a pending task (no queue fits it yet), with the reason why
    task = make_task(clock, 2, task_id="tp", queue="auto", status=TaskStatus.PENDING)
    store.add_task(task.model_copy(update={"reason": "no queue fits"}), [])

    # When brokerage places it on q2, Then it is registered, its spec names q2, its reason is
    # cleared, and the event is emitted with the change
    clock.advance(1)
    placed = task.spec.model_copy(update={"queue": "q2"})
    assert store.place_task("tp", placed, [ev.task_registered("tp")])
    stored = store.get_task("tp")
    assert (stored.spec.queue, stored.reason, stored.status) == ("q2", "", TaskStatus.REGISTERED)
    assert stored.updated_at == clock.t
    assert pending_ids(store) == ["task-registered:tp"]

    # And placing it again (a second rebrokerage) loses and writes nothing
    assert not store.place_task("tp", placed.model_copy(update={"queue": "q3"}), [event(1)])
    assert store.get_task("tp").spec.queue == "q2"
    assert pending_ids(store) == ["task-registered:tp"]


def test_place_task_of_a_task_that_is_not_pending_loses(store: Store, clock: FakeClock) -> None:
    # Given a registered task, and a pending one that was killed
    store.add_task(make_task(clock, 1, task_id="tr"), [])
    store.add_task(make_task(clock, 1, task_id="tk", status=TaskStatus.PENDING), [])
    assert store.set_task_status("tk", [TaskStatus.PENDING], TaskStatus.ABORTED)

    # When either is placed, Then nothing changes
    for task_id in ("tr", "tk"):
        before = store.get_task(task_id)
        spec = before.spec.model_copy(update={"queue": "q2"})
        assert not store.place_task(task_id, spec, [ev.task_registered(task_id)])
        assert store.get_task(task_id) == before
    assert store.pending_events(10) == []


# --- add_jobs ------------------------------------------------------------------------------------


def test_add_jobs_stores_the_jobs_and_moves_the_task_in_one_step(
    store: Store, clock: FakeClock
) -> None:
    # Given a registered task and its three jobs
    task = make_task(clock, 3)
    store.add_task(task, [])
    jobs = make_jobs(task, clock.now())

    # When the jobs are added, moving the task registered -> ready, with a nudge event
    nudge = ev.jobs_activated("q", 3, key=task.id)
    clock.advance(1)
    added = store.add_jobs(
        task.id, jobs, expect=TaskStatus.REGISTERED, to=TaskStatus.READY, events=[nudge]
    )

    # Then the jobs are stored as given (in index order), the task is ready with 3 jobs, and
    # the event is pending
    assert added is True
    assert store.list_jobs(task.id) == jobs
    stored = store.get_task(task.id)
    assert (stored.status, stored.n_jobs) == (TaskStatus.READY, 3)
    assert stored.job_counts == {"activated": 3}
    assert pending_ids(store) == [nudge.id]


def test_add_jobs_twice_returns_false_and_creates_no_duplicates(
    store: Store, clock: FakeClock
) -> None:
    # Given a task already split (a first delivery of task.registered)
    task = make_task(clock, 3)
    store.add_task(task, [])
    jobs = make_jobs(task, clock.now())
    assert store.add_jobs(task.id, jobs, expect=TaskStatus.REGISTERED, to=TaskStatus.READY)

    # When a second split of the same task (a duplicate delivery that read the task while it
    # was still registered) adds the same jobs, expecting registered, with an event
    again = store.add_jobs(
        task.id,
        make_jobs(task, clock.now() + 1),
        expect=TaskStatus.REGISTERED,
        to=TaskStatus.READY,
        events=[event(1)],
    )

    # Then it loses cleanly: False, still three jobs, nothing written
    assert again is False
    assert store.list_jobs(task.id) == jobs
    assert store.get_task(task.id).job_counts == {"activated": 3}
    assert store.pending_events(10) == []


def test_add_jobs_writes_nothing_when_the_task_left_the_expected_state(
    store: Store, clock: FakeClock
) -> None:
    # Given a registered task that is aborted before it is split
    task = make_task(clock, 3)
    store.add_task(task, [])
    kill(store, task.id, "user", now=clock.now())

    # When its jobs are added expecting it registered
    added = store.add_jobs(
        task.id,
        make_jobs(task, clock.now()),
        expect=TaskStatus.REGISTERED,
        to=TaskStatus.READY,
        events=[event(1)],
    )

    # Then nothing was written: no jobs, no event, the task still aborted
    assert added is False
    assert store.list_jobs(task.id) == []
    assert store.get_task(task.id).status is TaskStatus.ABORTED
    assert store.pending_events(10) == []


def test_add_jobs_with_a_forbidden_task_transition_raises_illegal_transition(
    store: Store, clock: FakeClock
) -> None:
    task = make_task(clock, 2)
    store.add_task(task, [])
    with pytest.raises(IllegalTransition):
        store.add_jobs(
            task.id, make_jobs(task, clock.now()), expect=TaskStatus.REGISTERED, to=TaskStatus.DONE
        )
    assert store.list_jobs(task.id) == []


def test_parents_are_stored_and_returned(store: Store, clock: FakeClock) -> None:
    # Given a task of two jobs where the second waits for the first
    task = make_task(clock, 2)
    store.add_task(task, [])
    parent = new_job(task, JobSpec(index=0, command=["a"]), clock.now())
    child = new_job(task, JobSpec(index=1, command=["b"], parents=[parent.id]), clock.now())

    # When they are added
    store.add_jobs(task.id, [parent, child], expect=TaskStatus.REGISTERED, to=TaskStatus.READY)

    # Then the child comes back with its parent and waits (defined)
    stored = store.get_job(child.id)
    assert stored.parents == [parent.id]
    assert stored.status is JobStatus.DEFINED
    assert store.get_job(parent.id).parents == []


# --- what the jobs add up to ---------------------------------------------------------------------


def test_job_counts_is_an_aggregation_by_status(store: Store, clock: FakeClock) -> None:
    # Given five jobs: two claimed, one of them then finished
    add_split_task(store, clock, 5)
    first, _second = store.claim_jobs("q", "p1", 2, fits_all(), clock.now())
    store.apply_job_changes([report(first, JobStatus.FINISHED, clock)])

    # When the jobs are counted
    # Then each status has its count, and statuses with no job are absent
    assert store.job_counts("t1") == {
        JobStatus.ACTIVATED: 3,
        JobStatus.SENT: 1,
        JobStatus.FINISHED: 1,
    }
    assert store.job_counts("unknown") == {}


def test_has_unended_jobs_until_every_job_has_ended(store: Store, clock: FakeClock) -> None:
    # Given a task of two jobs, both claimed
    add_split_task(store, clock, 2)
    a, b = claim_all(store, clock)
    assert store.has_unended_jobs("t1") is True

    # When one finishes, the task still has an unended job
    store.apply_job_changes([report(a, JobStatus.FINISHED, clock)])
    assert store.has_unended_jobs("t1") is True

    # Then when the other finishes too, none is left
    store.apply_job_changes([report(b, JobStatus.FINISHED, clock)])
    assert store.has_unended_jobs("t1") is False


def test_a_task_without_jobs_has_no_unended_jobs(store: Store, clock: FakeClock) -> None:
    store.add_task(make_task(clock), [])
    assert store.has_unended_jobs("t1") is False


def test_task_flags_are_the_flags_set_by_the_tasks_finished_jobs(
    store: Store, clock: FakeClock
) -> None:
    # Given a task of four jobs that may fail once: two finish setting flags, one finishes
    # without flags, one fails setting a flag; and another task whose job sets a flag
    add_split_task(store, clock, 4, max_attempts=1)
    add_split_task(store, clock, 1, task_id="t2", queue="other")
    j0, j1, j2, j3 = claim_all(store, clock)
    [other] = claim_all(store, clock, queue="other")
    changes = [
        flagged(j0, JobStatus.FINISHED, clock, converged="yes", chi2="1.5"),
        flagged(j1, JobStatus.FINISHED, clock, chi2="0.9"),
        flagged(j2, JobStatus.FINISHED, clock),
        flagged(j3, JobStatus.FAILED, clock, converged="no"),
        flagged(other, JobStatus.FINISHED, clock, elsewhere="1"),
    ]
    assert store.apply_job_changes(changes) == [True] * 5

    # When the task's flags are read
    flags = store.task_flags("t1")

    # Then they are the finished jobs' flags, every value set; the jobs kept their flags
    assert flags == {"converged": {"yes"}, "chi2": {"1.5", "0.9"}}
    assert store.get_job(j0.id) == changes[0].after
    assert store.get_job(j3.id).flags == {"converged": "no"}
    assert store.task_flags("nope") == {}
