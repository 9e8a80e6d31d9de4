"""Specification of the Store port (`skypanda.ports.Store`), one test per clause of its contract.

Every test runs against every implementation in `conftest.BACKENDS`. The tests use only the
port's methods, so an implementation passes by behaving as the docstrings in `ports.py` say,
whatever its backend's primitives.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from skypanda.domain import events as ev
from skypanda.domain.errors import IllegalTransition, InvalidInput, NotFound
from skypanda.domain.events import Event, EventType
from skypanda.domain.jobflow import JobChange, apply_report, new_job, requeue_lost
from skypanda.domain.models import Attempt, Job, JobReport, JobSpec, Pilot, Resources
from skypanda.domain.states import JobStatus, PilotStatus, TaskStatus
from skypanda.ports import Store

from .conftest import (
    Backend,
    ClosableStore,
    FakeClock,
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

    def pilot_loop(pilot_id: str, n: int) -> None:
        try:
            start.wait()
            while claimed := store.claim_jobs("q", pilot_id, n, fits_all(), clock.now()):
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
    assert store.heartbeat("p1", clock.t + 30) is True
    assert store.get_pilot("p1").heartbeat_at == clock.t + 30


def test_heartbeat_of_an_ended_pilot_returns_false_and_changes_nothing(
    store: Store, clock: FakeClock
) -> None:
    # Given a pilot that has finished
    store.add_pilot(pilot("p1", clock, heartbeat_at=clock.t))
    ended = store.get_pilot("p1").model_copy(update={"status": PilotStatus.FINISHED})
    assert store.update_pilot(ended, [PilotStatus.SUBMITTED])

    # When a heartbeat from it arrives, Then it is refused and not recorded
    assert store.heartbeat("p1", clock.t + 30) is False
    assert store.get_pilot("p1") == ended


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
