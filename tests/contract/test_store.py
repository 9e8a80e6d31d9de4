"""Specification of the Store port (`skypanda.ports.Store`), one test per clause of its contract.

Every test runs against every implementation in `conftest.BACKENDS`. The tests use only the
port's methods, so an implementation passes by behaving as the docstrings in `ports.py` say,
whatever its backend's primitives.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from skypanda.domain import events as ev
from skypanda.domain.dag import ParentsState
from skypanda.domain.errors import BackendUnavailable, IllegalTransition, InvalidInput, NotFound
from skypanda.domain.events import Event, EventType
from skypanda.domain.ids import job_id
from skypanda.domain.jobflow import JobChange, apply_report, new_job, requeue_lost
from skypanda.domain.models import (
    Attempt,
    Job,
    JobReport,
    JobSpec,
    OutputFile,
    Pilot,
    Resources,
    Task,
)
from skypanda.domain.states import JobStatus, PilotStatus, TaskStatus, WorkflowStatus
from skypanda.domain.workflow import Workflow, WorkflowSpec, WorkflowTask
from skypanda.ports import Store
from tests.support import FakeClock

from .conftest import (
    Backend,
    ClosableStore,
    add_split_task,
    fits_all,
    make_jobs,
    make_queue,
    make_task,
)


def claim_all(store: Store, clock: FakeClock, pilot_id: str = "p1", queue: str = "q") -> list[Job]:
    return store.claim_jobs(queue, pilot_id, 1000, fits_all(), clock.now())


def report(job: Job, status: JobStatus, clock: FakeClock, pilot_id: str = "p1") -> JobChange:
    """What a pilot's report of `status` for the job's current attempt would write."""
    exit_code = None if status in (JobStatus.STARTING, JobStatus.RUNNING) else 0
    r = JobReport(job_id=job.id, attempt=job.attempt, status=status, exit_code=exit_code)
    return apply_report(job, r, pilot_id, clock.now(), f"file:///logs/{job.id}/{job.attempt}")


def event(n: int) -> Event:
    return Event(id=f"e{n}", type=EventType.TICK, subject="ticks", data={"n": n})


def pending_ids(store: Store) -> list[str]:
    return [stored.event.id for stored in store.pending_events(1000)]


def pilot(pilot_id: str, clock: FakeClock, *, queue: str = "q", **fields: object) -> Pilot:
    return Pilot(id=pilot_id, queue=queue, created_at=clock.now(), **fields)


# --- tasks -------------------------------------------------------------------------------------


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


# --- set_task_status ---------------------------------------------------------------------------


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


# --- add_jobs ----------------------------------------------------------------------------------


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
    store.abort_task(task.id, "user")

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


# --- reading jobs ------------------------------------------------------------------------------


def test_get_job_of_an_unknown_id_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_job("nope")


def test_get_jobs_returns_those_that_exist(store: Store, clock: FakeClock) -> None:
    jobs = add_split_task(store, clock, 3)
    found = store.get_jobs([jobs[2].id, "nope", jobs[0].id, jobs[0].id])
    assert found == {jobs[0].id: jobs[0], jobs[2].id: jobs[2]}


def test_list_jobs_is_in_index_order_with_status_filter_and_paging(
    store: Store, clock: FakeClock
) -> None:
    # Given five jobs (ids are scrambled, so id order is not index order), two of them claimed
    jobs = add_split_task(store, clock, 5)
    assert [j.id for j in jobs] != sorted(j.id for j in jobs)
    claimed = store.claim_jobs("q", "p1", 2, fits_all(), clock.now())

    # Then listing is by index, and can filter by status and page
    assert [j.index for j in store.list_jobs("t1")] == [0, 1, 2, 3, 4]
    assert [j.index for j in store.list_jobs("t1", limit=2, offset=1)] == [1, 2]
    assert [j.index for j in store.list_jobs("t1", status=JobStatus.ACTIVATED)] == [2, 3, 4]
    assert store.list_jobs("t1", status=JobStatus.SENT) == claimed


# --- claim_jobs --------------------------------------------------------------------------------


def test_claim_moves_jobs_to_sent_for_the_pilot(store: Store, clock: FakeClock) -> None:
    # Given two activated jobs
    jobs = add_split_task(store, clock, 2)

    # When a pilot claims them
    clock.advance(10)
    claimed = store.claim_jobs("q", "p1", 5, fits_all(), clock.now())

    # Then both are sent to it, started now, and stored that way
    assert [j.id for j in claimed] == [j.id for j in jobs]
    for job in claimed:
        assert (job.status, job.pilot_id, job.started_at) == (JobStatus.SENT, "p1", clock.t)
        assert store.get_job(job.id) == job


def test_claim_takes_highest_priority_first_then_oldest_then_lowest_index(
    store: Store, clock: FakeClock
) -> None:
    # Given an old and a new task of normal priority, and a newest task of high priority
    old = add_split_task(store, clock, 3, task_id="old")
    clock.advance(10)
    new = add_split_task(store, clock, 3, task_id="new")
    clock.advance(10)
    urgent = add_split_task(store, clock, 3, task_id="urgent", priority=5)

    # When a pilot claims them one at a time
    order = [store.claim_jobs("q", "p1", 1, fits_all(), clock.now()) for _ in range(10)]

    # Then it gets the urgent jobs, then the old task's, then the new task's, each by index;
    # and nothing once none is left
    expected = [[j] for j in urgent + old + new]
    assert [[j.id for j in c] for c in order] == [[j.id for j in e] for e in expected] + [[]]


def test_one_claim_returns_its_jobs_in_dispatch_order(store: Store, clock: FakeClock) -> None:
    old = add_split_task(store, clock, 3, task_id="old")
    clock.advance(10)
    urgent = add_split_task(store, clock, 2, task_id="urgent", priority=5)
    claimed = store.claim_jobs("q", "p1", 4, fits_all(), clock.now())
    assert [j.id for j in claimed] == [j.id for j in urgent + old[:2]]


def test_claim_takes_only_jobs_that_fit_the_capacity(store: Store, clock: FakeClock) -> None:
    # Given jobs needing too much memory, too many cores, exactly the capacity, and little
    add_split_task(store, clock, 1, task_id="big", resources=Resources(memory_mb=8000))
    add_split_task(store, clock, 1, task_id="wide", resources=Resources(cores=4))
    exact = add_split_task(
        store, clock, 1, task_id="exact", resources=Resources(memory_mb=4000, cores=2)
    )
    small = add_split_task(store, clock, 1, task_id="small", resources=Resources(memory_mb=100))

    # When a pilot with 4000 MB and 2 cores claims everything it can
    claimed = store.claim_jobs("q", "p1", 10, Resources(memory_mb=4000, cores=2), clock.now())

    # Then it gets only the jobs that fit (a job needing exactly the capacity fits)
    assert {j.id for j in claimed} == {exact[0].id, small[0].id}
    assert store.count_activated("q") == 2


def test_claim_takes_only_activated_jobs_of_the_queue(store: Store, clock: FakeClock) -> None:
    # Given a job waiting for its parent (defined), a job on another queue, and one claimed job
    task = make_task(clock, 2)
    store.add_task(task, [])
    parent = new_job(task, JobSpec(index=0, command=["a"]), clock.now())
    child = new_job(task, JobSpec(index=1, command=["b"], parents=[parent.id]), clock.now())
    store.add_jobs(task.id, [parent, child], expect=TaskStatus.REGISTERED, to=TaskStatus.READY)
    add_split_task(store, clock, 1, task_id="elsewhere", queue="other")
    assert [j.id for j in claim_all(store, clock, "p1")] == [parent.id]

    # When another pilot claims on the queue
    claimed = claim_all(store, clock, "p2")

    # Then it gets nothing: the defined job waits and the sent one is held by p1
    assert claimed == []
    assert store.get_job(child.id).status is JobStatus.DEFINED
    assert store.get_job(parent.id).pilot_id == "p1"


def test_claim_respects_n(store: Store, clock: FakeClock) -> None:
    # Given five activated jobs
    add_split_task(store, clock, 5)

    # When a pilot claims 2, then 2, then 2
    sizes = [len(store.claim_jobs("q", "p1", 2, fits_all(), clock.now())) for _ in range(3)]

    # Then it gets 2, 2, then the last one
    assert sizes == [2, 2, 1]


def test_each_claim_records_an_attempt(store: Store, clock: FakeClock) -> None:
    # Given two activated jobs
    add_split_task(store, clock, 2)

    # When a pilot claims them
    clock.advance(4)
    claimed = claim_all(store, clock, "p7")

    # Then each job has one attempt record: attempt 1, sent to that pilot, started now
    for job in claimed:
        assert store.attempts(job.id) == [
            Attempt(
                job_id=job.id, attempt=1, pilot_id="p7", status=JobStatus.SENT, started_at=clock.t
            )
        ]


def test_concurrent_claims_never_hand_one_job_to_two_pilots(store: Store, clock: FakeClock) -> None:
    # Given 500 activated jobs and 8 pilots claiming at once from their own threads
    jobs = add_split_task(store, clock, 500)
    n_pilots = 8
    start = threading.Barrier(n_pilots)
    got: dict[str, list[str]] = {f"p{i}": [] for i in range(n_pilots)}
    errors: list[BaseException] = []
    retried: list[BaseException] = []

    def claim(pilot_id: str, n: int) -> list[Job]:
        # A pilot retries a claim the store gave up on under contention (BackendUnavailable is
        # retryable: the API answers 503 and the pilot's client tries again); a few in a row
        # are allowed, a store that keeps failing is not.
        for _ in range(5):
            try:
                return store.claim_jobs("q", pilot_id, n, fits_all(), clock.now())
            except BackendUnavailable as e:
                retried.append(e)
        return store.claim_jobs("q", pilot_id, n, fits_all(), clock.now())

    def pilot_loop(pilot_id: str, n: int) -> None:
        try:
            start.wait()
            while claimed := claim(pilot_id, n):
                got[pilot_id].extend(j.id for j in claimed)
        except BaseException as e:  # reported below: an exception in a thread is otherwise lost
            errors.append(e)

    threads = [
        threading.Thread(target=pilot_loop, args=(pilot_id, 1 + i % 4))
        for i, pilot_id in enumerate(got)
    ]

    # When they claim until nothing is left
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    # Then no job went to two pilots, together they got every job, and each job is held by
    # the pilot that got it, with exactly one attempt record
    assert errors == []
    everything = [job_id for ids in got.values() for job_id in ids]
    assert [job_id for job_id, n in Counter(everything).items() if n > 1] == []
    assert set(everything) == {j.id for j in jobs}
    stored = store.get_jobs(everything)
    for pilot_id, ids in got.items():
        assert {stored[job_id].pilot_id for job_id in ids} <= {pilot_id}
    assert store.job_counts("t1") == {JobStatus.SENT: 500}
    assert all(len(store.attempts(job_id)) == 1 for job_id in everything[:50])


# --- apply_job_changes -------------------------------------------------------------------------


def test_a_change_from_the_stored_state_wins_and_upserts_its_attempt(
    store: Store, clock: FakeClock
) -> None:
    # Given a job sent to pilot p1
    add_split_task(store, clock, 1)
    [job] = claim_all(store, clock)

    # When the pilot reports it running, then finished
    clock.advance(5)
    running = report(job, JobStatus.RUNNING, clock)
    assert store.apply_job_changes([running]) == [True]
    clock.advance(5)
    finished = report(running.after, JobStatus.FINISHED, clock)
    assert store.apply_job_changes([finished]) == [True]

    # Then the job is stored as the last change wrote it, and its one attempt record was
    # replaced (not appended) by each change
    assert store.get_job(job.id) == finished.after
    assert store.attempts(job.id) == [finished.attempt]


def test_a_change_from_a_stale_status_loses_and_leaves_the_job_alone(
    store: Store, clock: FakeClock
) -> None:
    # Given a job that its pilot already reported running
    add_split_task(store, clock, 1)
    [job] = claim_all(store, clock)
    running = report(job, JobStatus.RUNNING, clock)
    store.apply_job_changes([running])

    # When a change computed from the job as sent (stale) is applied, with an event
    stale = report(job, JobStatus.FINISHED, clock)
    result = store.apply_job_changes([stale])

    # Then it loses: the job, its attempt and the outbox are unchanged
    assert result == [False]
    assert store.get_job(job.id) == running.after
    assert store.attempts(job.id) == [running.attempt]
    assert store.pending_events(10) == []


def test_a_change_from_a_stale_attempt_loses_even_when_the_status_matches(
    store: Store, clock: FakeClock
) -> None:
    # Given a job whose first attempt was lost and requeued, and which a second pilot now holds
    add_split_task(store, clock, 1)
    [first] = claim_all(store, clock, "p1")
    assert store.apply_job_changes([requeue_lost(first, clock.now(), None)]) == [True]
    [second] = claim_all(store, clock, "p2")
    assert (second.status, second.attempt) == (JobStatus.SENT, 2)

    # When the first pilot's late report of attempt 1 (also "sent" -> finished) is applied
    late = report(first, JobStatus.FINISHED, clock, "p1")
    result = store.apply_job_changes([late])

    # Then it loses: the second attempt is untouched
    assert result == [False]
    assert store.get_job(second.id) == second
    assert [a.status for a in store.attempts(second.id)] == [JobStatus.FAILED, JobStatus.SENT]


def test_results_are_per_change_in_order_and_only_winners_emit_events(
    store: Store, clock: FakeClock
) -> None:
    # Given three jobs sent to p1, the middle one already finished
    add_split_task(store, clock, 3)
    a, b, c = claim_all(store, clock)
    store.apply_job_changes([report(b, JobStatus.FINISHED, clock)])
    assert store.pending_events(10) != []
    store.mark_delivered([s.seq for s in store.pending_events(10)], clock.now())

    # When finishing all three is applied in one batch (b's change is stale)
    changes = [report(j, JobStatus.FINISHED, clock) for j in (a, b, c)]
    results = store.apply_job_changes(changes)

    # Then a and c win, b loses, and only the winners' job.ended events are pending
    assert results == [True, False, True]
    assert pending_ids(store) == [changes[0].events[0].id, changes[2].events[0].id]
    assert store.get_job(a.id) == changes[0].after
    assert store.get_job(c.id) == changes[2].after


def test_apply_job_changes_of_nothing_returns_nothing(store: Store) -> None:
    assert store.apply_job_changes([]) == []


# --- live jobs, abort and kill -----------------------------------------------------------------


def test_live_jobs_of_pilot_are_its_sent_starting_and_running_jobs(
    store: Store, clock: FakeClock
) -> None:
    # Given p1 holding three jobs (one starting, one running, one finished) and p2 one job
    add_split_task(store, clock, 4)
    sent, starting, finished = store.claim_jobs("q", "p1", 3, fits_all(), clock.now())
    [other] = claim_all(store, clock, "p2")
    starting_change = report(starting, JobStatus.STARTING, clock)
    running_change = report(sent, JobStatus.RUNNING, clock)
    store.apply_job_changes(
        [starting_change, running_change, report(finished, JobStatus.FINISHED, clock)]
    )

    # Then p1's live jobs are the starting and the running one, p2's is its sent one
    assert {j.id: j.status for j in store.live_jobs_of_pilot("p1")} == {
        sent.id: JobStatus.RUNNING,
        starting.id: JobStatus.STARTING,
    }
    assert store.live_jobs_of_pilot("p2") == [other]
    assert store.live_jobs_of_pilot("p3") == []


def test_abort_task_cancels_queued_jobs_and_flags_live_ones_for_their_pilots(
    store: Store, clock: FakeClock
) -> None:
    # Given a task of four jobs: p1 holds two (one running), two are still activated
    jobs = add_split_task(store, clock, 4)
    held = store.claim_jobs("q", "p1", 2, fits_all(), clock.now())
    store.apply_job_changes([report(held[0], JobStatus.RUNNING, clock)])
    assert store.jobs_to_kill("p1") == []

    # When the task is aborted
    clock.advance(2)
    task = store.abort_task("t1", "user asked")

    # Then the task is aborted with the reason; queued jobs are cancelled; the live jobs stay
    # live (their pilots end them) but are flagged, and p1 is told to kill them
    assert (task.status, task.reason) == (TaskStatus.ABORTED, "user asked")
    assert store.get_task("t1").status is TaskStatus.ABORTED
    queued = [j for j in jobs if j.id not in {h.id for h in held}]
    assert {store.get_job(j.id).status for j in queued} == {JobStatus.CANCELLED}
    live = store.live_jobs_of_pilot("p1")
    assert {j.id for j in live} == {h.id for h in held}
    assert all(j.kill_requested for j in live)
    assert sorted(store.jobs_to_kill("p1")) == sorted(h.id for h in held)
    assert store.jobs_to_kill("p2") == []


def test_a_killed_job_that_ended_is_no_longer_to_be_killed(store: Store, clock: FakeClock) -> None:
    # Given an aborted task whose live job p1 holds
    add_split_task(store, clock, 1)
    [job] = claim_all(store, clock)
    store.abort_task("t1", "user")
    [flagged] = store.live_jobs_of_pilot("p1")

    # When the pilot reports the job failed (it killed it)
    store.apply_job_changes([report(flagged, JobStatus.FAILED, clock)])

    # Then there is nothing left to kill, and the job was cancelled rather than retried
    assert store.jobs_to_kill("p1") == []
    assert store.get_job(job.id).status is JobStatus.CANCELLED


@pytest.mark.parametrize("ended", [TaskStatus.FAILED, TaskStatus.ABORTED])
def test_abort_of_an_ended_task_raises_illegal_transition(
    store: Store, clock: FakeClock, ended: TaskStatus
) -> None:
    # Given a task that has ended
    store.add_task(make_task(clock), [])
    assert store.set_task_status("t1", [TaskStatus.REGISTERED], ended)

    # When it is aborted, Then the store refuses and the task keeps its state
    with pytest.raises(IllegalTransition):
        store.abort_task("t1", "too late")
    assert store.get_task("t1").status is ended


def test_abort_of_an_unknown_task_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.abort_task("nope", "why not")


# --- queues ------------------------------------------------------------------------------------


def test_put_queue_then_get_and_list(store: Store) -> None:
    # Given two queues
    a = make_queue("a", max_pilots=5, pilot_resources=Resources(memory_mb=8000, cores=4))
    b = make_queue("b", online=False)

    # When they are put
    store.put_queue(b)
    store.put_queue(a)

    # Then they read back as written
    assert store.get_queue("a") == a
    assert store.get_queue("b") == b
    assert sorted(store.list_queues(), key=lambda q: q.name) == [a, b]


def test_put_queue_replaces_a_queue_of_the_same_name(store: Store) -> None:
    store.put_queue(make_queue("q", max_pilots=2))
    store.put_queue(make_queue("q", max_pilots=9))
    assert store.get_queue("q").max_pilots == 9
    assert len(store.list_queues()) == 1


def test_get_queue_of_an_unknown_name_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_queue("nope")


def test_count_activated_counts_the_queues_activated_jobs_only(
    store: Store, clock: FakeClock
) -> None:
    # Given four jobs on q (one claimed) and two on another queue
    add_split_task(store, clock, 4)
    add_split_task(store, clock, 2, task_id="t2", queue="other")
    store.claim_jobs("q", "p1", 1, fits_all(), clock.now())

    # Then q has three activated jobs, the other two, and an empty queue none
    assert store.count_activated("q") == 3
    assert store.count_activated("other") == 2
    assert store.count_activated("empty") == 0


# --- pilots ------------------------------------------------------------------------------------


def test_add_pilot_then_get_pilot_returns_it(store: Store, clock: FakeClock) -> None:
    p = pilot("p1", clock, host="h", pid=42, resources=Resources(cores=2), heartbeat_at=clock.t)
    store.add_pilot(p)
    assert store.get_pilot("p1") == p


def test_a_pilot_never_heard_from_reads_back_without_a_heartbeat(
    store: Store, clock: FakeClock
) -> None:
    # Given a pilot record made by the scaler before the pilot started (no heartbeat yet)
    p = pilot("p1", clock)

    # When it is stored and read back
    store.add_pilot(p)

    # Then it reads back as written: heartbeat_at is still None
    assert store.get_pilot("p1") == p


def test_get_pilot_of_an_unknown_id_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_pilot("nope")


def test_update_pilot_wins_from_an_expected_status(store: Store, clock: FakeClock) -> None:
    # Given a submitted pilot
    store.add_pilot(pilot("p1", clock, heartbeat_at=clock.t))

    # When it is written as running with details, expecting submitted
    running = store.get_pilot("p1").model_copy(
        update={"status": PilotStatus.RUNNING, "host": "node7", "pid": 99}
    )
    won = store.update_pilot(running, [PilotStatus.SUBMITTED])

    # Then the write wins and the record is the new one
    assert won is True
    assert store.get_pilot("p1") == running


def test_update_pilot_loses_from_another_status_and_changes_nothing(
    store: Store, clock: FakeClock
) -> None:
    # Given a pilot already declared missed
    store.add_pilot(pilot("p1", clock, status=PilotStatus.MISSED, heartbeat_at=clock.t))
    before = store.get_pilot("p1")

    # When a writer that expects it live writes it as running
    won = store.update_pilot(
        before.model_copy(update={"status": PilotStatus.RUNNING, "host": "late"}),
        [PilotStatus.SUBMITTED, PilotStatus.RUNNING],
    )

    # Then the write loses and the record is unchanged
    assert won is False
    assert store.get_pilot("p1") == before


def test_heartbeat_records_when_a_live_pilot_was_heard(store: Store, clock: FakeClock) -> None:
    store.add_pilot(pilot("p1", clock, status=PilotStatus.RUNNING, heartbeat_at=clock.t))
    beat = store.heartbeat("p1", clock.t + 30)
    assert beat is not None and beat.id == "p1" and not beat.drain
    assert store.get_pilot("p1").heartbeat_at == clock.t + 30


def test_heartbeat_of_an_ended_pilot_returns_none_and_changes_nothing(
    store: Store, clock: FakeClock
) -> None:
    # Given a pilot that has finished
    store.add_pilot(pilot("p1", clock, heartbeat_at=clock.t))
    ended = store.get_pilot("p1").model_copy(update={"status": PilotStatus.FINISHED})
    assert store.update_pilot(ended, [PilotStatus.SUBMITTED])

    # When a heartbeat from it arrives, Then it is refused and not recorded
    assert store.heartbeat("p1", clock.t + 30) is None
    assert store.get_pilot("p1") == ended


def test_a_drain_request_on_the_pilot_record_comes_back_with_its_heartbeat(
    store: Store, clock: FakeClock
) -> None:
    # Given a running pilot an operator asked to drain (a compare-and-set on its status)
    store.add_pilot(pilot("p1", clock, status=PilotStatus.RUNNING, heartbeat_at=clock.t))
    asked = store.get_pilot("p1").model_copy(update={"drain": True})
    assert store.update_pilot(asked, [PilotStatus.RUNNING])

    # When it heartbeats, Then the record it gets back says drain, and the beat is recorded
    beat = store.heartbeat("p1", clock.t + 5)
    assert beat is not None and beat.drain is True
    assert store.get_pilot("p1").heartbeat_at == clock.t + 5


def test_silent_pilots_are_live_pilots_of_the_queue_not_heard_since(
    store: Store, clock: FakeClock
) -> None:
    # Given, at t0: a pilot that never heartbeats, one that heartbeats later, one that ended,
    # one on another queue, and one only created later
    t0 = clock.t
    store.add_pilot(pilot("quiet", clock))
    store.add_pilot(pilot("chatty", clock, status=PilotStatus.RUNNING))
    store.add_pilot(pilot("gone", clock, status=PilotStatus.MISSED))
    store.add_pilot(pilot("elsewhere", clock, queue="other"))
    clock.advance(100)
    store.add_pilot(pilot("young", clock))
    store.heartbeat("chatty", clock.now())

    # When asking for pilots of q not heard from since t0 + 50
    silent = store.silent_pilots("q", t0 + 50)

    # Then only the quiet one is silent (its start counts as heard)
    assert [p.id for p in silent] == ["quiet"]


def test_list_pilots_filters_by_queue_and_liveness(store: Store, clock: FakeClock) -> None:
    store.add_pilot(pilot("submitted", clock))
    store.add_pilot(pilot("running", clock, status=PilotStatus.RUNNING))
    store.add_pilot(pilot("finished", clock, status=PilotStatus.FINISHED))
    store.add_pilot(pilot("elsewhere", clock, queue="other", status=PilotStatus.RUNNING))

    def ids(pilots: list[Pilot]) -> set[str]:
        return {p.id for p in pilots}

    assert ids(store.list_pilots()) == {"submitted", "running", "finished", "elsewhere"}
    assert ids(store.list_pilots(live=True)) == {"submitted", "running", "elsewhere"}
    assert ids(store.list_pilots(queue="q")) == {"submitted", "running", "finished"}
    assert ids(store.list_pilots(queue="q", live=True)) == {"submitted", "running"}


# --- outbox ------------------------------------------------------------------------------------


def test_pending_events_are_oldest_first_and_limited(store: Store) -> None:
    store.add_events([event(1), event(2)])
    store.add_events([event(3)])
    assert [s.event for s in store.pending_events(10)] == [event(1), event(2), event(3)]
    assert [s.event.id for s in store.pending_events(2)] == ["e1", "e2"]
    seqs = [s.seq for s in store.pending_events(10)]
    assert seqs == sorted(seqs)


def test_add_events_ignores_an_event_whose_id_is_already_there(store: Store) -> None:
    # Given events e1 and e2 in the outbox, e1 already delivered
    store.add_events([event(1), event(2)])
    store.mark_delivered([store.pending_events(1)[0].seq], 0.0)

    # When e1, e2 and e3 are added (a producer retried)
    store.add_events([event(1), event(2), event(3)])

    # Then only e3 is new: e1 is not redelivered and e2 is pending once
    assert pending_ids(store) == ["e2", "e3"]


def test_events_of_state_changes_are_deduplicated_too(store: Store, clock: FakeClock) -> None:
    store.add_task(make_task(clock), [ev.task_registered("t1")])
    store.add_events([ev.task_registered("t1")])
    assert pending_ids(store) == ["task-registered:t1"]


def test_mark_delivered_removes_events_from_pending(store: Store) -> None:
    store.add_events([event(1), event(2), event(3)])
    first, _, third = store.pending_events(10)
    store.mark_delivered([first.seq, third.seq], 5.0)
    assert pending_ids(store) == ["e2"]


def test_mark_failed_dead_parks_the_event(store: Store) -> None:
    # Given two pending events
    store.add_events([event(1), event(2)])
    poison = store.pending_events(1)[0]

    # When the first fails for good
    store.mark_failed(poison.seq, "bad data", dead=True)

    # Then it is no longer pending, and it does not hold back the second
    assert pending_ids(store) == ["e2"]


def test_mark_failed_not_dead_keeps_the_event_pending_and_counts_the_try(store: Store) -> None:
    # Given a pending event
    store.add_events([event(1)])
    seq = store.pending_events(1)[0].seq

    # When its delivery fails twice, retryably
    store.mark_failed(seq, "busy", dead=False)
    store.mark_failed(seq, "busy", dead=False)

    # Then it is still pending, first, with two tries counted
    [stored] = store.pending_events(10)
    assert (stored.seq, stored.event, stored.tries) == (seq, event(1), 2)


def test_the_outbox_survives_a_restart(backend: Backend, store: ClosableStore) -> None:
    # Given three events: one delivered, one failed once, one untouched
    store.add_events([event(1), event(2), event(3)])
    one, two, _ = store.pending_events(10)
    store.mark_delivered([one.seq], 1.0)
    store.mark_failed(two.seq, "busy", dead=False)

    # When the store is closed and a new one is opened on the same data
    store.close()
    reopened = backend.open()

    # Then the undelivered events are still pending, with their tries, and the delivered one
    # is not
    assert [(s.event, s.tries) for s in reopened.pending_events(10)] == [
        (event(2), 1),
        (event(3), 0),
    ]


def test_tasks_and_jobs_survive_a_restart(
    backend: Backend, store: ClosableStore, clock: FakeClock
) -> None:
    jobs = add_split_task(store, clock, 3)
    task = store.get_task("t1")
    store.close()
    reopened = backend.open()
    assert reopened.get_task("t1") == task
    assert reopened.list_jobs("t1") == jobs


def test_a_change_computed_before_a_kill_request_loses_and_keeps_the_kill(
    store: Store, clock: FakeClock
) -> None:
    # Given a job held by p1, read by its report handler just before the task is aborted
    add_split_task(store, clock, 1)
    (held,) = store.claim_jobs("q", "p1", 1, fits_all(), clock.now())
    stale = store.get_job(held.id)
    store.abort_task("t1", "user asked")

    # When the report computed from the stale read is written
    (won,) = store.apply_job_changes([report(stale, JobStatus.RUNNING, clock)])

    # Then it loses, and the kill request stands for p1's next heartbeat
    assert not won
    assert store.get_job(held.id).kill_requested
    assert store.jobs_to_kill("p1") == [held.id]


# --- workflows ---------------------------------------------------------------------------------


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


# --- task flags --------------------------------------------------------------------------------


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


def flagged(job: Job, status: JobStatus, clock: FakeClock, **flags: str) -> JobChange:
    """What a pilot's report of `status` with `flags` would write."""
    exit_code = 0 if status is JobStatus.FINISHED else 1
    r = JobReport(
        job_id=job.id, attempt=job.attempt, status=status, exit_code=exit_code, flags=flags
    )
    return apply_report(job, r, "p1", clock.now(), f"file:///logs/{job.id}/{job.attempt}")


# --- job dependencies --------------------------------------------------------------------------


def add_jobs_with_parents(
    store: Store,
    clock: FakeClock,
    task_id: str,
    parents: list[list[str]],
    *,
    parent_status: dict[str, JobStatus] | None = None,
    **spec: Any,
) -> list[Job]:
    """Store and split task `task_id`: job i waits for `parents[i]` (defined if any, else
    activated, as new_job makes them). Returns its jobs in index order."""
    task = make_task(clock, len(parents), task_id=task_id, **spec)
    store.add_task(task, [])
    jobs = [
        new_job(task, JobSpec(index=i, command=["run", str(i)], parents=p), clock.now())
        for i, p in enumerate(parents)
    ]
    ready = TaskStatus.READY
    assert store.add_jobs(
        task.id, jobs, expect=TaskStatus.REGISTERED, to=ready, parent_status=parent_status
    )
    return jobs


def end_jobs(
    store: Store, clock: FakeClock, jobs: list[Job], status: JobStatus = JobStatus.FINISHED
) -> None:
    """Run `jobs` (activated, the first of their queue in dispatch order) to `status`."""
    claimed = {
        j.id: j for j in store.claim_jobs(jobs[0].queue, "p1", len(jobs), fits_all(), clock.now())
    }
    assert set(claimed) == {j.id for j in jobs}
    assert all(store.apply_job_changes([flagged(claimed[j.id], status, clock) for j in jobs]))
    assert {store.get_job(j.id).status for j in jobs} == {status}


def ids(jobs: list[Job]) -> list[str]:
    return [j.id for j in jobs]


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


def test_a_cancelled_parent_counts_as_failed_and_a_pending_one_is_still_told(
    store: Store, clock: FakeClock
) -> None:
    # Given a child of two parents of different tasks, the first of which is cancelled
    [cancelled] = add_jobs_with_parents(store, clock, "ta", [[]])
    [waiting] = add_jobs_with_parents(store, clock, "tb", [[]], queue="other")
    [child] = add_jobs_with_parents(store, clock, "tc", [[cancelled.id, waiting.id]])
    store.abort_task("ta", "user")

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


# --- release_roots -----------------------------------------------------------------------------


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


# --- retry_jobs --------------------------------------------------------------------------------


def test_retry_jobs_starts_a_new_attempt_of_failed_and_cancelled_jobs(
    store: Store, clock: FakeClock
) -> None:
    # Given a task of three jobs that may fail once: one finished, one failed (with a flag),
    # one cancelled when the task was aborted
    add_split_task(store, clock, 3, max_attempts=1)
    done, failed = store.claim_jobs("q", "p1", 2, fits_all(), clock.now())
    finished = flagged(done, JobStatus.FINISHED, clock, k="v")
    store.apply_job_changes([finished, flagged(failed, JobStatus.FAILED, clock, k="w")])
    store.abort_task("t1", "user")
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
    # And they can be claimed again
    assert {j.id for j in claim_all(store, clock)} == {failed.id, cancelled.id}


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
    store.abort_task("t1", "missing parent")

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
    store.abort_task("tc", "user")

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


# --- data staging ------------------------------------------------------------------------------


def test_a_jobs_staging_fields_and_outputs_round_trip(
    backend: Backend, store: ClosableStore, clock: FakeClock
) -> None:
    # Given a split task whose jobs stage their inputs in and upload outputs
    (job,) = add_split_task(store, clock, 1, stage_in=True, outputs=["*.txt", "plots/**"])
    assert (job.stage_in, job.output_patterns) == (True, ["*.txt", "plots/**"])
    assert store.get_job(job.id) == job

    # When a pilot claims it (it gets what to stage) and reports it finished with two outputs
    (held,) = claim_all(store, clock)
    assert (held.stage_in, held.output_patterns) == (True, ["*.txt", "plots/**"])
    files = [
        OutputFile(name="a.txt", uri="gs://b/outputs/a.txt", size=0, sha256="e" * 64),
        OutputFile(name="plots/x y.png", uri="file:///o/x%20y.png", size=2**31, sha256="0" * 64),
    ]
    done = JobReport(
        job_id=held.id, attempt=held.attempt, status=JobStatus.FINISHED, exit_code=0, outputs=files
    )
    (won,) = store.apply_job_changes([apply_report(held, done, "p1", clock.now(), "file:///l")])

    # Then the job reads back with its outputs, in order, also after a restart
    assert won
    assert store.get_job(held.id).outputs == files
    store.close()
    reopened = backend.open()
    (stored,) = reopened.list_jobs("t1")
    assert (stored.status, stored.outputs, stored.stage_in) == (JobStatus.FINISHED, files, True)


# --- queue definitions (issue 6) -------------------------------------------------------------


def test_queue_limits_and_status_round_trip(backend: Backend, store: ClosableStore) -> None:
    # Given a queue using every brokerage field
    q = make_queue(
        "big", status="test", mode="push", pilot_resources=Resources(memory_mb=32000, cores=8),
        max_memory_per_core_mb=4000, max_cores=8, max_walltime_s="1d", disk_gb=120.5, gpus=2,
    )  # fmt: skip
    # When it is put, and the store is reopened
    store.put_queue(q)
    store.close()
    reopened = backend.open()
    # Then it reads back equal, by name and in the list
    assert reopened.get_queue("big") == q
    assert reopened.list_queues() == [q]
    assert reopened.get_queue("big").status == "test"


def test_a_queue_stored_with_the_old_online_field_still_loads(store: ClosableStore) -> None:
    from skypanda.adapters.local.sqlite_store import SqliteStore

    # Given a queue record written before `status` replaced `online`
    legacy = '{"name": "old", "mode": "pull", "online": false, "min_pilots": 0}'
    if isinstance(store, SqliteStore):
        with store._tx() as db:
            db.execute("INSERT INTO queues (name, spec) VALUES (?, ?)", ("old", legacy))
    else:
        store._queues.document("old").set({"name": "old", "spec": legacy})  # type: ignore[attr-defined]
    # Then it loads as an offline queue
    (old,) = store.list_queues()
    assert old == store.get_queue("old")
    assert (old.status, old.online, old.min_pilots) == ("offline", False, 0)
