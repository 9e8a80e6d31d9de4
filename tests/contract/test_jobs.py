"""JobStore contract (`skypanda.ports.jobs`), jobs one by one: read, claimed, changed
compare-and-set. Task-wide bulks are in test_bulk.py. Every test runs against every backend."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from skypanda.domain.errors import BackendUnavailable, NotFound
from skypanda.domain.fairshare import OwnerLoad
from skypanda.domain.jobflow import apply_report, new_job, requeue_lost
from skypanda.domain.models import (
    Attempt,
    Job,
    JobReport,
    JobSpec,
    OutputFile,
    Resources,
)
from skypanda.domain.states import (
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
    make_task,
)
from .helpers import (
    claim_all,
    kill,
    pending_ids,
    report,
)

# --- reading jobs --------------------------------------------------------------------------------


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


def test_list_activated_is_in_dispatch_order_and_limited(store: Store, clock: FakeClock) -> None:
    jobs = add_split_task(store, clock, 4)
    store.claim_jobs("q", "p1", 1, fits_all(), clock.now())
    listed = store.list_activated("q", 2)
    assert [j.index for j in listed] == [1, 2]
    assert {j.id for j in store.list_activated("q", 10)} == {j.id for j in jobs[1:]}
    assert store.list_activated("other", 10) == []


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


# --- claim_jobs ----------------------------------------------------------------------------------


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


def test_a_claim_records_when_each_attempt_became_ready_to_run(
    store: Store, clock: FakeClock
) -> None:
    # Given a job activated at its submission (t0), not claimed before
    t0 = clock.now()
    [job] = add_split_task(store, clock, 1)
    assert job.activated_at is None
    # When a pilot claims it 10 s later
    clock.advance(10)
    [first] = claim_all(store, clock, "p1")
    # Then the claim records its last change before it (its activation, t0), and keeps it
    assert first.activated_at == t0 and first.started_at == t0 + 10
    assert store.get_job(job.id).activated_at == t0
    # And when its pilot is lost and it is requeued (activated again at t1), then claimed at
    # t1 + 3, its second attempt records t1
    clock.advance(5)
    t1 = clock.now()
    assert store.apply_job_changes([requeue_lost(first, t1, None)]) == [True]
    clock.advance(3)
    [second] = claim_all(store, clock, "p2")
    assert (second.attempt, second.activated_at) == (2, t1)
    assert store.get_job(job.id) == second


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


def test_claims_by_owner_and_owner_loads(store: Store, clock: FakeClock) -> None:
    # Given alice's task of 5 jobs and bob's of 2 on queue q, one of alice's taken
    add_split_task(store, clock, 5, task_id="ta", owner="alice")
    add_split_task(store, clock, 2, task_id="tb", owner="bob")
    store.claim_jobs("q", "p0", 1, fits_all(), clock.now(), owner="alice")

    # Then the loads say who runs and who waits, and the owners waiting come in name order
    loads = store.owner_loads("q")
    assert loads == {"alice": OwnerLoad(1, 4), "bob": OwnerLoad(0, 2)}
    assert store.owner_loads("elsewhere") == {}
    assert store.waiting_owners("q", 2) == ["alice", "bob"]
    assert store.waiting_owners("q", 1) == ["alice"]
    assert store.waiting_owners("elsewhere", 2) == []

    # And a claim for bob takes only bob's jobs, even when asking for more
    got = store.claim_jobs("q", "p1", 5, fits_all(), clock.now(), owner="bob")
    assert [j.owner for j in got] == ["bob", "bob"]
    assert store.owner_loads("q") == {"alice": OwnerLoad(1, 4), "bob": OwnerLoad(2, 0)}
    assert store.waiting_owners("q", 2) == ["alice"]


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


# --- apply_job_changes ---------------------------------------------------------------------------


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


def test_a_large_batch_with_a_job_twice_is_applied_change_by_change_in_order(
    store: Store, clock: FakeClock
) -> None:
    # Given 300 jobs sent to p1 (more than one statement's worth on SQLite)
    add_split_task(store, clock, 300)
    jobs = claim_all(store, clock)
    first, second = jobs[0], jobs[1]

    # When one batch reports them all running, then the first finished (computed from its
    # running state, so a second change of the same job), then a stale report of the second
    running = [report(j, JobStatus.RUNNING, clock) for j in jobs]
    finished = report(running[0].after, JobStatus.FINISHED, clock)
    stale = report(second, JobStatus.FINISHED, clock)
    results = store.apply_job_changes([*running, finished, stale])

    # Then each change is compared with what the changes before it wrote: every job runs, the
    # first one then finished, the stale report lost; attempts and counts follow
    assert results == [True] * 300 + [True, False]
    assert store.get_job(first.id) == finished.after
    assert store.attempts(first.id) == [finished.attempt]
    assert store.get_job(second.id) == running[1].after
    assert store.job_counts("t1") == {JobStatus.RUNNING: 299, JobStatus.FINISHED: 1}
    assert {(e.status, e.error_code): e.count for e in store.metric_counts().job_ends} == {
        (JobStatus.FINISHED, None): 1
    }


def test_apply_job_changes_of_nothing_returns_nothing(store: Store) -> None:
    assert store.apply_job_changes([]) == []


def test_a_change_computed_before_a_kill_request_loses_and_keeps_the_kill(
    store: Store, clock: FakeClock
) -> None:
    # Given a job held by p1, read by its report handler just before the task is aborted
    add_split_task(store, clock, 1)
    (held,) = store.claim_jobs("q", "p1", 1, fits_all(), clock.now())
    stale = store.get_job(held.id)
    kill(store, "t1", "user asked", now=clock.now())

    # When the report computed from the stale read is written
    (won,) = store.apply_job_changes([report(stale, JobStatus.RUNNING, clock)])

    # Then it loses, and the kill request stands for p1's next heartbeat
    assert not won
    assert store.get_job(held.id).kill_requested
    assert store.jobs_to_kill("p1") == [held.id]


# --- live jobs -----------------------------------------------------------------------------------


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
