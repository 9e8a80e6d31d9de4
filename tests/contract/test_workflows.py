"""WorkflowStore contract (`skypanda.ports.workflows`): workflows, and the dependency edges
between their jobs (release, roots, retry). Every test runs against every backend."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from skypanda.domain import events as ev
from skypanda.domain.dag import ParentsState
from skypanda.domain.errors import IllegalTransition, InvalidInput, NotFound
from skypanda.domain.ids import job_id
from skypanda.domain.jobflow import new_job
from skypanda.domain.models import (
    JobSpec,
    Task,
)
from skypanda.domain.states import (
    JobStatus,
    TaskStatus,
    WorkflowStatus,
)
from skypanda.domain.workflow import Workflow, WorkflowSpec, WorkflowTask
from skypanda.ports import Store
from tests.support import FakeClock

from .conftest import (
    add_split_task,
    fits_all,
    make_task,
)
from .helpers import (
    add_jobs_with_parents,
    claim_all,
    end_jobs,
    event,
    flagged,
    ids,
    kill,
    pending_ids,
    report,
)

# --- workflows -----------------------------------------------------------------------------------


def workflow(clock: FakeClock, workflow_id: str = "w1", *names: str) -> Workflow:
    """A workflow of tasks `names` (default: a and b), created now."""
    tasks = [WorkflowTask(name=n, command=["run"], n_jobs=1, queue="q") for n in names or "ab"]
    return Workflow(
        id=workflow_id,
        spec=WorkflowSpec(name=f"wf-{workflow_id}", tasks=tasks),
        owner="alice",
        created_at=clock.now(),
        updated_at=clock.now(),
    )


def workflow_task(
    clock: FakeClock, wf: Workflow, name: str, iteration: int = 1, **fields: Any
) -> Task:
    """The record of task `name` of `wf`, at `iteration`."""
    task = make_task(clock, 1, task_id=f"{wf.id}-{name}-{iteration}", **fields)
    return task.model_copy(update={"workflow_id": wf.id, "iteration": iteration})


def test_add_workflow_then_get_it_with_its_tasks_and_events(store: Store, clock: FakeClock) -> None:
    # Given a workflow of two tasks and its registration event
    wf = workflow(clock)
    tasks = [workflow_task(clock, wf, "a"), workflow_task(clock, wf, "b")]
    registered = ev.workflow_registered(wf.id)

    # When it is added
    store.add_workflow(wf, tasks, [registered])

    # Then it reads back as written; its tasks are stored, each knowing its workflow and
    # iteration; the event is pending
    assert store.get_workflow(wf.id) == wf
    assert store.workflow_tasks(wf.id) == tasks
    assert store.get_task(tasks[0].id) == tasks[0]
    assert (store.get_task(tasks[1].id).workflow_id, tasks[1].iteration) == (wf.id, 1)
    assert pending_ids(store) == [registered.id]


def test_add_workflow_with_an_existing_id_raises_invalid_input_and_writes_nothing(
    store: Store, clock: FakeClock
) -> None:
    # Given a stored workflow
    first = workflow(clock)
    store.add_workflow(first, [workflow_task(clock, first, "a")], [])

    # When another workflow with the same id is added, with other tasks and an event
    clock.advance(5)
    again = workflow(clock, "w1", "x")
    with pytest.raises(InvalidInput):
        store.add_workflow(again, [workflow_task(clock, again, "x")], [event(1)])

    # Then the first is untouched, and nothing of the second was stored
    assert store.get_workflow(first.id) == first
    assert [t.spec.name for t in store.workflow_tasks(first.id)] == ["task-w1-a-1"]
    with pytest.raises(NotFound):
        store.get_task("w1-x-1")
    assert store.pending_events(10) == []


def test_get_workflow_of_an_unknown_id_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_workflow("nope")


def test_list_workflows_is_most_recent_first(store: Store, clock: FakeClock) -> None:
    # Given three workflows created one after the other
    for wf_id in ("w1", "w2", "w3"):
        store.add_workflow(workflow(clock, wf_id), [], [])
        clock.advance(1)

    # Then the newest comes first, and the limit is respected
    assert [w.id for w in store.list_workflows()] == ["w3", "w2", "w1"]
    assert [w.id for w in store.list_workflows(limit=2)] == ["w3", "w2"]


def test_set_workflow_status_wins_from_an_expected_state(store: Store, clock: FakeClock) -> None:
    # Given a registered workflow
    store.add_workflow(workflow(clock), [], [])

    # When it is moved from registered or failed to running, then from running to failed
    clock.advance(3)
    started = store.set_workflow_status(
        "w1", [WorkflowStatus.REGISTERED, WorkflowStatus.FAILED], WorkflowStatus.RUNNING
    )
    failed = store.set_workflow_status(
        "w1", [WorkflowStatus.RUNNING], WorkflowStatus.FAILED, reason="task b failed"
    )

    # Then both writes win, and the workflow is failed with the reason
    assert (started, failed) == (True, True)
    wf = store.get_workflow("w1")
    assert (wf.status, wf.reason) == (WorkflowStatus.FAILED, "task b failed")
    assert wf.updated_at == clock.t


def test_set_workflow_status_loses_from_another_state_and_changes_nothing(
    store: Store, clock: FakeClock
) -> None:
    # Given a workflow already aborted
    store.add_workflow(workflow(clock), [], [])
    assert store.set_workflow_status("w1", [WorkflowStatus.REGISTERED], WorkflowStatus.ABORTED)
    before = store.get_workflow("w1")

    # When a writer that expects it running moves it to done
    clock.advance(1)
    won = store.set_workflow_status("w1", [WorkflowStatus.RUNNING], WorkflowStatus.DONE)

    # Then it loses and the workflow is unchanged
    assert won is False
    assert store.get_workflow("w1") == before


def test_set_workflow_status_of_an_unknown_id_loses(store: Store) -> None:
    assert not store.set_workflow_status("nope", [WorkflowStatus.RUNNING], WorkflowStatus.DONE)


def test_set_workflow_status_to_a_state_the_machine_forbids_raises_illegal_transition(
    store: Store, clock: FakeClock
) -> None:
    # Given a registered workflow
    store.add_workflow(workflow(clock), [], [])

    # When it is asked to go from registered straight to done, Then the store refuses
    with pytest.raises(IllegalTransition):
        store.set_workflow_status("w1", [WorkflowStatus.REGISTERED], WorkflowStatus.DONE)
    assert store.get_workflow("w1").status is WorkflowStatus.REGISTERED


def test_workflow_tasks_are_every_record_of_the_workflow_only(
    store: Store, clock: FakeClock
) -> None:
    # Given a workflow of tasks a and b, a second iteration of b made later, another workflow
    # and a plain task
    wf = workflow(clock)
    a, b = workflow_task(clock, wf, "a"), workflow_task(clock, wf, "b")
    store.add_workflow(wf, [b, a], [])
    other = workflow(clock, "w2")
    store.add_workflow(other, [workflow_task(clock, other, "a")], [])
    store.add_task(make_task(clock, task_id="plain"), [])
    clock.advance(10)
    b2 = workflow_task(clock, wf, "b", iteration=2)
    store.add_task(b2, [])

    # When the workflow's tasks are listed
    tasks = store.workflow_tasks(wf.id)

    # Then they are its three records, oldest first (then by iteration and name), without
    # job counts
    assert tasks == [a, b, b2]
    assert store.workflow_tasks("nope") == []


# --- release_children ----------------------------------------------------------------------------


def test_a_child_is_released_only_once_every_parent_ended(store: Store, clock: FakeClock) -> None:
    # Given parents p0 and p1 (task tp) and a child waiting for both (task tc)
    p0, p1 = add_jobs_with_parents(store, clock, "tp", [[], []])
    [child] = add_jobs_with_parents(store, clock, "tc", [[p0.id, p1.id]])
    assert child.status is JobStatus.DEFINED

    # When p0 finishes and is released, Then the child still waits for p1
    end_jobs(store, clock, [p0])
    assert store.release_children([p0.id]) == {child.id: ParentsState(pending=True)}

    # When p1 finishes and is released, Then the child has no parent pending nor failed
    end_jobs(store, clock, [p1])
    assert store.release_children([p1.id]) == {child.id: ParentsState(pending=False)}

    # And the store only records: activating the child is the caller's
    assert store.get_job(child.id).status is JobStatus.DEFINED


def test_release_children_is_idempotent(store: Store, clock: FakeClock) -> None:
    # Given two parents that finished, released once, and their two children
    parents = add_jobs_with_parents(store, clock, "tp", [[], []])
    children = add_jobs_with_parents(store, clock, "tc", [ids(parents), [parents[0].id]])
    end_jobs(store, clock, parents)
    first = store.release_children(ids(parents))

    # When they are released again (a redelivered event), one by one and together
    again = [store.release_children([parents[0].id]), store.release_children(ids(parents) * 2)]

    # Then the answer is the same each time
    released = ParentsState(pending=False)
    assert first == {children[0].id: released, children[1].id: released}
    assert again == [first, first]


def test_release_children_ignores_a_parent_that_has_not_ended(
    store: Store, clock: FakeClock
) -> None:
    # Given a parent that is running, a parent not yet claimed, and a child of each
    running, queued = add_jobs_with_parents(store, clock, "tp", [[], []])
    children = add_jobs_with_parents(store, clock, "tc", [[running.id], [queued.id]])
    [held] = store.claim_jobs("q", "p1", 1, fits_all(), clock.now())
    store.apply_job_changes([report(held, JobStatus.RUNNING, clock)])

    # When they are released (as a stale or early event would ask), and an unknown job too
    released = store.release_children([running.id, queued.id, "nope"])

    # Then nothing is recorded: no child is summed up, and each still waits for its parent
    assert released == {}
    end_jobs(store, clock, [queued])
    assert store.release_children([queued.id]) == {children[1].id: ParentsState(pending=False)}


def test_release_children_of_a_job_without_children_is_empty(
    store: Store, clock: FakeClock
) -> None:
    jobs = add_split_task(store, clock, 1)
    end_jobs(store, clock, jobs)
    assert store.release_children(ids(jobs)) == {}
    assert store.release_children([]) == {}


def test_release_children_names_up_to_three_parents_that_did_not_finish(
    store: Store, clock: FakeClock
) -> None:
    # Given five parents that may fail once and two children: one waits for all five,
    # the other for the first only
    parents = add_jobs_with_parents(store, clock, "tp", [[]] * 5, max_attempts=1)
    wide, narrow = add_jobs_with_parents(store, clock, "tc", [ids(parents), [parents[0].id]])

    # When the first finishes and the four others fail, and all are released
    claimed = {j.id: j for j in claim_all(store, clock)}
    ends = [JobStatus.FINISHED] + [JobStatus.FAILED] * 4
    changes = [flagged(claimed[p.id], s, clock) for p, s in zip(parents, ends, strict=True)]
    assert all(store.apply_job_changes(changes))
    released = store.release_children(ids(parents))

    # Then no parent is pending; the wide child is told of three of the failed parents, the
    # narrow one of none
    assert set(released) == {wide.id, narrow.id}
    assert released[narrow.id] == ParentsState(pending=False)
    state = released[wide.id]
    assert state.pending is False
    assert len(state.failed_parents) == 3
    assert set(state.failed_parents) <= set(ids(parents[1:]))


def test_a_child_of_one_parent_is_told_whether_that_parent_ended_badly(
    store: Store, clock: FakeClock
) -> None:
    # Given three parents of one attempt, and a child of each (one parent each: on Firestore
    # summed up from the parent's own edge, with no query of the child's edges)
    ok, bad, gone = add_jobs_with_parents(store, clock, "tp", [[], [], []], max_attempts=1)
    children = add_jobs_with_parents(store, clock, "tc", [[ok.id], [bad.id], [gone.id]])
    # When the first finishes, the second fails and the third is cancelled, and all released
    claimed = {j.id: j for j in store.claim_jobs("q", "p1", 2, fits_all(), clock.now())}
    ends = {ok.id: JobStatus.FINISHED, bad.id: JobStatus.FAILED}
    assert all(store.apply_job_changes([flagged(claimed[i], s, clock) for i, s in ends.items()]))
    kill(store, "tp", "user", now=clock.now())
    released = store.release_children([ok.id, bad.id, gone.id])
    # Then no child waits; the second and third are told of their parent, the first of none
    assert released == {
        children[0].id: ParentsState(pending=False),
        children[1].id: ParentsState(pending=False, failed_parents=(bad.id,)),
        children[2].id: ParentsState(pending=False, failed_parents=(gone.id,)),
    }
    # And again (a redelivered event), the same
    assert store.release_children([gone.id, bad.id, ok.id]) == released


def test_a_cancelled_parent_counts_as_failed_and_a_pending_one_is_still_told(
    store: Store, clock: FakeClock
) -> None:
    # Given a child of two parents of different tasks, the first of which is cancelled
    [cancelled] = add_jobs_with_parents(store, clock, "ta", [[]])
    [waiting] = add_jobs_with_parents(store, clock, "tb", [[]], queue="other")
    [child] = add_jobs_with_parents(store, clock, "tc", [[cancelled.id, waiting.id]])
    kill(store, "ta", "user", now=clock.now())

    # When the cancelled parent is released
    released = store.release_children([cancelled.id])

    # Then the child has a parent pending, and a failed one
    assert released == {child.id: ParentsState(pending=True, failed_parents=(cancelled.id,))}


def test_add_jobs_records_edges_ended_as_parent_status_says(store: Store, clock: FakeClock) -> None:
    # Given parents p0 and p1 (still to run), and a job gone that ended failed
    p0, p1 = add_jobs_with_parents(store, clock, "tp", [[], []])

    # When a child of all three is made, told that `gone` failed and p1 is running (not final:
    # recorded as pending, like a parent not named)
    parent_status = {"gone": JobStatus.FAILED, p1.id: JobStatus.RUNNING}
    [child] = add_jobs_with_parents(
        store, clock, "tc", [["gone", p0.id, p1.id]], parent_status=parent_status
    )

    # Then once p0 finishes, the child still waits for p1 and knows `gone` failed
    end_jobs(store, clock, [p0])
    assert store.release_children([p0.id]) == {
        child.id: ParentsState(pending=True, failed_parents=("gone",))
    }
    # And once p1 finishes, nothing is pending
    end_jobs(store, clock, [p1])
    assert store.release_children([p1.id]) == {
        child.id: ParentsState(pending=False, failed_parents=("gone",))
    }


def test_add_jobs_of_a_task_made_after_its_parents_ended_records_them_ended(
    store: Store, clock: FakeClock
) -> None:
    # Given two parents that finished
    parents = add_jobs_with_parents(store, clock, "tp", [[], []])
    end_jobs(store, clock, parents)

    # When a child of both is made with their statuses (a lazy task), activated
    statuses = {p.id: JobStatus.FINISHED for p in parents}
    task = make_task(clock, 1, task_id="tc")
    store.add_task(task, [])
    child = new_job(task, JobSpec(index=0, command=["c"], parents=ids(parents)), clock.now())
    child = child.model_copy(update={"status": JobStatus.ACTIVATED})
    assert store.add_jobs(
        "tc", [child], expect=TaskStatus.REGISTERED, to=TaskStatus.READY, parent_status=statuses
    )

    # Then the child is stored as given, and a late release of a parent finds nothing pending
    assert store.get_job(child.id) == child
    assert store.release_children([parents[0].id]) == {child.id: ParentsState(pending=False)}


def test_a_parent_with_many_children_releases_them_all(store: Store, clock: FakeClock) -> None:
    # Given a parent with 501 children (more than one commit of edges)
    [parent] = add_jobs_with_parents(store, clock, "tp", [[]])
    children = add_jobs_with_parents(store, clock, "tc", [[parent.id]] * 501)
    end_jobs(store, clock, [parent])

    # When it is released, Then every child is released
    released = store.release_children([parent.id])
    assert released == {c.id: ParentsState(pending=False) for c in children}


@pytest.mark.timeout(480)  # 600 parents and their children on the Firestore emulator: under
# load (CI's two cores shared by four test processes) it took over 120 s
def test_many_parents_released_in_one_call_tell_each_child_its_own_state(
    store: Store, clock: FakeClock
) -> None:
    # Given 601 parents (more than one statement's worth on SQLite), of which 600 ended: the
    # first 300 failed, the next 300 finished, the last one still waits to run; and one child
    # per pair of neighbouring parents
    parents = add_jobs_with_parents(store, clock, "tp", [[]] * 601, max_attempts=1)
    pairs = [[parents[i].id, parents[i + 1].id] for i in range(0, 600, 2)]
    children = add_jobs_with_parents(store, clock, "tc", pairs)
    claimed = {j.id: j for j in claim_all(store, clock)}
    ends = [JobStatus.FAILED] * 300 + [JobStatus.FINISHED] * 300
    changes = [flagged(claimed[p.id], s, clock) for p, s in zip(parents, ends, strict=False)]
    assert all(store.apply_job_changes(changes))
    [last] = add_jobs_with_parents(store, clock, "tl", [[parents[600].id]])

    # When all of them are released in one call, the unended last one too
    released = store.release_children(ids(parents))

    # Then each child of an ended pair is told: those of the failed ones the two that
    # failed, those of the finished ones nothing; the child of the parent that did not end is
    # not told
    assert set(released) == set(ids(children))
    for i, child in enumerate(children):
        failed = set(pairs[i]) if i < 150 else set()
        assert set(released[child.id].failed_parents) == failed
        assert released[child.id].pending is False
    assert last.id not in released


def test_parents_released_at_once_release_their_child_at_least_once(
    store: Store, clock: FakeClock
) -> None:
    # Given a child of eight parents that all finished
    parents = add_jobs_with_parents(store, clock, "tp", [[]] * 8)
    [child] = add_jobs_with_parents(store, clock, "tc", [ids(parents)])
    end_jobs(store, clock, parents)
    start = threading.Barrier(len(parents))
    results: list[dict[str, ParentsState]] = []
    errors: list[BaseException] = []

    def release(parent_id: str) -> None:
        try:
            start.wait()
            results.append(store.release_children([parent_id]))
        except BaseException as e:  # reported below: an exception in a thread is otherwise lost
            errors.append(e)

    # When each parent is released from its own thread at the same moment
    threads = [threading.Thread(target=release, args=(p.id,)) for p in parents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    # Then each release told of the child, and at least one (the last to record) saw none of
    # its parents pending
    assert errors == []
    assert len(results) == len(parents)
    assert all(set(r) == {child.id} and not r[child.id].failed for r in results)
    assert any(not r[child.id].pending for r in results)


# --- release_roots -------------------------------------------------------------------------------


def test_release_roots_activates_the_tasks_defined_jobs_without_parents(
    store: Store, clock: FakeClock
) -> None:
    # Given a task stored with every job defined: two roots and a child of the first
    task = make_task(clock, 3, task_id="tw")
    store.add_task(task, [])
    r0, r1 = (new_job(task, JobSpec(index=i, command=["r"]), clock.now()) for i in range(2))
    child = new_job(task, JobSpec(index=2, command=["c"], parents=[r0.id]), clock.now())
    jobs = [j.model_copy(update={"status": JobStatus.DEFINED}) for j in (r0, r1, child)]
    store.add_jobs("tw", jobs, expect=TaskStatus.REGISTERED, to=TaskStatus.READY)
    add_jobs_with_parents(store, clock, "other", [[]])  # activated already

    # When the roots are released (twice: a redelivered event)
    clock.advance(2)
    first = store.release_roots("tw", clock.now())
    again = store.release_roots("tw", clock.now())

    # Then the two roots were activated once; the child still waits
    assert (first, again) == (2, 0)
    assert store.get_job(r0.id).status is JobStatus.ACTIVATED
    assert store.get_job(r1.id).updated_at == clock.t
    assert store.get_job(child.id).status is JobStatus.DEFINED
    assert store.job_counts("tw") == {JobStatus.ACTIVATED: 2, JobStatus.DEFINED: 1}


# --- retry_jobs ----------------------------------------------------------------------------------


def test_retry_jobs_starts_a_new_attempt_of_failed_and_cancelled_jobs(
    store: Store, clock: FakeClock
) -> None:
    # Given a task of three jobs that may fail once: one finished, one failed (with a flag),
    # one cancelled when the task was aborted
    add_split_task(store, clock, 3, max_attempts=1)
    done, failed = store.claim_jobs("q", "p1", 2, fits_all(), clock.now())
    finished = flagged(done, JobStatus.FINISHED, clock, k="v")
    store.apply_job_changes([finished, flagged(failed, JobStatus.FAILED, clock, k="w")])
    kill(store, "t1", "user", now=clock.now())
    [cancelled] = store.list_jobs("t1", status=JobStatus.CANCELLED)

    # When the user retries the task's jobs
    clock.advance(10)
    n = store.retry_jobs("t1", clock.now())

    # Then the failed and the cancelled job start a new attempt, activated (no parents), with
    # the last attempt's results and flags cleared; the finished job is kept
    assert n == 2
    for before in (failed, cancelled):
        after = store.get_job(before.id)
        assert (after.status, after.attempt, after.failures) == (JobStatus.ACTIVATED, 2, 0)
        assert after.pilot_id is None and after.exit_code is None and after.error_code is None
        assert (after.error_diag, after.log_uri, after.flags) == ("", None, {})
        assert (after.started_at, after.ended_at, after.updated_at) == (None, None, clock.t)
        assert not after.kill_requested
    assert store.get_job(done.id) == finished.after
    assert store.task_flags("t1") == {"k": {"v"}}
    # And the failed job keeps the record of the attempt that failed
    assert [(a.attempt, a.status) for a in store.attempts(failed.id)] == [(1, JobStatus.FAILED)]
    # And they can be claimed again, each claim a new attempt next to the old ones
    assert {j.id for j in claim_all(store, clock)} == {failed.id, cancelled.id}
    assert [a.attempt for a in store.attempts(failed.id)] == [1, 2]
    assert [a.attempt for a in store.attempts(cancelled.id)] == [2]


def test_retry_jobs_of_a_task_with_nothing_failed_resets_nothing(
    store: Store, clock: FakeClock
) -> None:
    jobs = add_split_task(store, clock, 2)
    end_jobs(store, clock, jobs)
    before = store.list_jobs("t1")
    assert store.retry_jobs("t1", clock.now()) == 0
    assert store.list_jobs("t1") == before


def test_a_retried_job_waits_for_a_parent_retried_with_it(store: Store, clock: FakeClock) -> None:
    # Given a task whose job 1 waits for job 0: job 0 failed, the release recorded it, and
    # job 1 was cancelled (its task aborted)
    parent, child = add_jobs_with_parents(
        store, clock, "t1", [[], [job_id("t1", 0)]], max_attempts=1
    )
    end_jobs(store, clock, [parent], JobStatus.FAILED)
    assert store.release_children([parent.id]) == {
        child.id: ParentsState(pending=False, failed_parents=(parent.id,))
    }
    kill(store, "t1", "missing parent", now=clock.now())

    # When the task's jobs are retried
    assert store.retry_jobs("t1", clock.now()) == 2

    # Then the parent is activated, and the child waits (defined) for the parent's new attempt
    assert store.get_job(parent.id).status is JobStatus.ACTIVATED
    after = store.get_job(child.id)
    assert (after.status, after.attempt) == (JobStatus.DEFINED, 2)
    # And when that attempt finishes, the child is released with no failed parent
    end_jobs(store, clock, [parent])
    assert store.release_children([parent.id]) == {child.id: ParentsState(pending=False)}


def test_a_retried_job_whose_parents_finished_is_activated(store: Store, clock: FakeClock) -> None:
    # Given a child of a parent that finished and was released; the child's task was aborted
    # before the child ran (cancelled)
    [parent] = add_jobs_with_parents(store, clock, "tp", [[]])
    [child] = add_jobs_with_parents(store, clock, "tc", [[parent.id]])
    end_jobs(store, clock, [parent])
    store.release_children([parent.id])
    kill(store, "tc", "user", now=clock.now())

    # When the child's task is retried, Then the child runs again at once; the parent is kept
    assert store.retry_jobs("tc", clock.now()) == 1
    assert store.get_job(child.id).status is JobStatus.ACTIVATED
    assert store.get_job(parent.id).status is JobStatus.FINISHED


def test_retrying_a_parent_makes_its_children_wait_again(store: Store, clock: FakeClock) -> None:
    # Given a child of two parents of different tasks: p failed, q finished, both released
    [p] = add_jobs_with_parents(store, clock, "tp", [[]], max_attempts=1)
    [q] = add_jobs_with_parents(store, clock, "tq", [[]], queue="other")
    [child] = add_jobs_with_parents(store, clock, "tc", [[p.id, q.id]])
    end_jobs(store, clock, [p], JobStatus.FAILED)
    end_jobs(store, clock, [q])
    assert store.release_children([p.id, q.id]) == {
        child.id: ParentsState(pending=False, failed_parents=(p.id,))
    }

    # When p's task is retried
    assert store.retry_jobs("tp", clock.now()) == 1

    # Then the child (untouched) waits for p's new attempt: its edge from p is pending again
    assert store.get_job(child.id) == child
    assert store.release_children([q.id]) == {child.id: ParentsState(pending=True)}
    # And once that attempt finishes, the child is released with no failed parent
    end_jobs(store, clock, [p])
    assert store.release_children([p.id]) == {child.id: ParentsState(pending=False)}
