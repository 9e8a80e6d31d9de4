"""What the Firestore store promises beyond the Store contract: splits larger than one commit
and splits interrupted half-way, claims that lose a race, bulks whose jobs change under them
and what bulks read, what claims and job changes cost in billed operations (and that the cheap
paths fall back safely), the outbox sequence, error mapping, and an index file that matches
the documents the store writes.

These run on the Firestore emulator only (tests/conftest.py starts it once per session).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

from skypanda.adapters.gcp.firestore import FirestoreStore, codec, plans
from skypanda.adapters.gcp.firestore import watches as watch_docs
from skypanda.adapters.gcp.firestore import webhooks as webhook_docs
from skypanda.adapters.gcp.metering import FirestoreMeter, meter_firestore
from skypanda.cli.bench_cloud import HEARTBEAT_OPS, LOG_FLUSH_OPS, _NoBlobs, _NoBus
from skypanda.domain import events as ev
from skypanda.domain.audit import AuditEntry, Outcome, audit_id
from skypanda.domain.bulk import Action, JobBulk
from skypanda.domain.bulk import plan as plan_action
from skypanda.domain.dag import ParentsState
from skypanda.domain.errors import BackendUnavailable
from skypanda.domain.jobflow import JobChange, apply_report, requeue_lost
from skypanda.domain.models import Attempt, Job, JobReport, Pilot, Queue
from skypanda.domain.states import JOB_QUEUED, JobStatus, PilotStatus, TaskStatus
from skypanda.domain.watch import WatchRule
from skypanda.domain.webhooks import Delivery, Webhook
from skypanda.domain.workflow import Workflow, WorkflowSpec, WorkflowTask
from skypanda.handlers import dispatch
from skypanda.handlers.services import Services
from skypanda.runtime.emulators import Emulator

from .conftest import FakeClock, FirestoreBackend, add_split_task, fits_all, make_jobs, make_task
from .helpers import add_jobs_with_parents, end_jobs

INDEXES = Path(__file__).resolve().parents[2] / "infra" / "firestore.indexes.json"


@pytest.fixture
def backend(firestore_emulator: Emulator, clock: FakeClock) -> Iterator[FirestoreBackend]:
    made = FirestoreBackend(f"t{uuid4().hex[:12]}-", clock)
    yield made
    made.close()


@pytest.fixture
def store(backend: FirestoreBackend) -> FirestoreStore:
    return backend.open()


def kill(store: FirestoreStore, task_id: str, now: float) -> None:
    """Abort the task and apply the kill's bulks to all its jobs at once (as the task.bulk
    pages would)."""
    status = store.get_task(task_id, counts=False).status
    assert store.set_task_status(task_id, [status], TaskStatus.ABORTED, reason="user")
    for bulk in plan_action(Action.KILL, task_id, {"reason": "user"}):
        store.apply_bulk(bulk, now)


def report(job: Job, status: JobStatus, clock: FakeClock) -> Any:
    r = JobReport(job_id=job.id, attempt=job.attempt, status=status, exit_code=0)
    return apply_report(job, r, job.pilot_id or "", clock.now(), "file:///log")


# --- splits ------------------------------------------------------------------------------------


def test_a_split_larger_than_one_commit_stores_every_job(
    store: FirestoreStore, clock: FakeClock
) -> None:
    # Given a task of 1201 jobs (three commits of at most 500 writes)
    task = make_task(clock, 1201)
    store.add_task(task, [])

    # When it is split
    added = store.add_jobs(
        task.id, make_jobs(task, clock.now()), expect=TaskStatus.REGISTERED, to=TaskStatus.READY
    )

    # Then every job is there, once
    assert added is True
    assert store.job_counts(task.id) == {JobStatus.ACTIVATED: 1201}
    assert store.get_task(task.id).n_jobs == 1201
    assert [j.index for j in store.list_jobs(task.id, limit=3, offset=1199)] == [1199, 1200]


def test_a_split_that_crashed_half_way_is_completed_by_the_next_delivery(
    store: FirestoreStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a split that stored its jobs, then died before moving the task to ready
    task = make_task(clock, 5)
    store.add_task(task, [])
    jobs = make_jobs(task, clock.now())

    def crash(*args: Any, **kwargs: Any) -> bool:
        raise BackendUnavailable("process killed")

    with monkeypatch.context() as patch:
        patch.setattr(store, "_cas", crash)
        with pytest.raises(BackendUnavailable):
            store.add_jobs(task.id, jobs, expect=TaskStatus.REGISTERED, to=TaskStatus.READY)
    assert store.get_task(task.id).status is TaskStatus.REGISTERED

    # ... and a pilot already claimed one of its jobs
    [claimed] = store.claim_jobs("q", "p1", 1, fits_all(), clock.now())

    # When task.registered is delivered again and the split re-runs (with later timestamps)
    clock.advance(5)
    nudge = ev.jobs_activated("q", 5, key=task.id)
    added = store.add_jobs(
        task.id,
        make_jobs(task, clock.now()),
        expect=TaskStatus.REGISTERED,
        to=TaskStatus.READY,
        events=[nudge],
    )

    # Then the split completes: the task is ready, the claimed job is still the pilot's, and
    # no job was rewritten
    assert added is True
    assert store.get_task(task.id).status is TaskStatus.READY
    assert store.get_job(claimed.id) == claimed
    assert store.list_jobs(task.id, status=JobStatus.ACTIVATED) == [
        j for j in jobs if j.id != claimed.id
    ]
    assert [s.event.id for s in store.pending_events(10)] == [nudge.id]


def test_jobs_written_by_a_split_the_task_was_aborted_during_are_cancelled(
    store: FirestoreStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a split during which the user aborts the task, just before the split writes its
    # jobs (so the abort finds no job to cancel)
    task = make_task(clock, 4)
    store.add_task(task, [])
    create = store._create_jobs

    def abort_then_create(jobs: Any) -> int:
        kill(store, task.id, clock.now())
        assert store.job_counts(task.id) == {}
        return create(jobs)

    monkeypatch.setattr(store, "_create_jobs", abort_then_create)

    # When the split finishes
    added = store.add_jobs(
        task.id, make_jobs(task, clock.now()), expect=TaskStatus.REGISTERED, to=TaskStatus.READY
    )

    # Then it lost, and none of its jobs can be dispatched
    assert added is False
    assert store.get_task(task.id).status is TaskStatus.ABORTED
    assert store.job_counts(task.id) == {JobStatus.CANCELLED: 4}
    assert store.claim_jobs("q", "p1", 10, fits_all(), clock.now()) == []


# --- claims ------------------------------------------------------------------------------------


def test_a_claim_that_loses_a_race_takes_other_jobs(
    backend: FirestoreBackend,
    store: FirestoreStore,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given six jobs, and a rival pilot that claims the head of the queue right after our
    # pilot's first query of candidates
    add_split_task(store, clock, 6)
    rival = backend.open()
    window = store._claim_window
    rival_got: list[Job] = []

    def racing_window(*args: Any) -> list[Any]:
        seen = window(*args)
        if not rival_got:
            rival_got.extend(rival.claim_jobs("q", "rival", 2, fits_all(), clock.now()))
        return seen

    monkeypatch.setattr(store, "_claim_window", racing_window)

    # When our pilot claims two jobs
    mine = store.claim_jobs("q", "p1", 2, fits_all(), clock.now())

    # Then its first commit lost, and a retry got it two other jobs
    assert len(rival_got) == 2
    assert len(mine) == 2
    assert not {j.id for j in mine} & {j.id for j in rival_got}
    assert {store.get_job(j.id).pilot_id for j in mine} == {"p1"}
    assert store.job_counts("t1") == {JobStatus.SENT: 4, JobStatus.ACTIVATED: 2}


def test_claims_from_one_process_take_turns_and_read_only_what_they_take(
    store: FirestoreStore, clock: FakeClock, meter: FirestoreMeter
) -> None:
    # Given 32 activated jobs, and four pilots served by one process claiming 8 each at once
    add_split_task(store, clock, 32)
    start = threading.Barrier(4)
    got: list[list[Job]] = []
    meter.reset()

    def claim(pilot_id: str) -> None:
        start.wait()
        got.append(store.claim_jobs("q", pilot_id, 8, fits_all(), clock.now()))

    threads = [threading.Thread(target=claim, args=(f"p{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    # Then each got 8 different jobs, no claim lost a race, and each job was read once
    assert sorted(len(jobs) for jobs in got) == [8, 8, 8, 8]
    assert len({j.id for jobs in got for j in jobs}) == 32
    assert store.claim_stats["conflicts"] == 0
    assert meter.snapshot() == {"reads": 32, "writes": 32, "deletes": 0}


def test_several_changes_of_one_job_in_one_call_apply_in_order(
    store: FirestoreStore, clock: FakeClock
) -> None:
    # Given a job sent to p1
    add_split_task(store, clock, 1)
    [job] = store.claim_jobs("q", "p1", 1, fits_all(), clock.now())

    # When "running" and then "finished from running" are applied in one call, plus a stale
    # "finished from sent"
    running = report(job, JobStatus.RUNNING, clock)
    finished = report(running.after, JobStatus.FINISHED, clock)
    stale = report(job, JobStatus.FINISHED, clock)
    results = store.apply_job_changes([running, finished, stale])

    # Then the first two win in order and the stale one loses
    assert results == [True, True, False]
    assert store.get_job(job.id) == finished.after
    assert store.attempts(job.id) == [finished.attempt]


def test_more_changes_than_one_commit_holds_are_all_applied(
    store: FirestoreStore, clock: FakeClock
) -> None:
    # Given 300 jobs sent to p1 (finishing them writes 900 documents: job, attempt, event)
    add_split_task(store, clock, 300)
    held = store.claim_jobs("q", "p1", 300, fits_all(), clock.now())

    # When all are reported finished in one call
    results = store.apply_job_changes([report(j, JobStatus.FINISHED, clock) for j in held])

    # Then every change won and every job ended once
    assert results == [True] * 300
    assert store.job_counts("t1") == {JobStatus.FINISHED: 300}
    assert len(store.pending_events(1000)) == 300


# --- task-wide bulks ----------------------------------------------------------------------------


def test_a_bulk_decides_again_on_jobs_changed_between_its_read_and_its_write(
    backend: FirestoreBackend,
    store: FirestoreStore,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given six activated jobs, and a rival pilot that claims two of them right after the
    # bulk's query read them (so the bulk's writes of those two lose their precondition)
    add_split_task(store, clock, 6)
    rival = backend.open()
    stream = store._stream
    taken: list[Job] = []

    def racing_stream(what: str, query: Any) -> list[Any]:
        seen = stream(what, query)
        if what == "apply_bulk" and not taken:
            taken.extend(rival.claim_jobs("q", "rival", 2, fits_all(), clock.now()))
        return seen

    monkeypatch.setattr(store, "_stream", racing_stream)

    # When the task's queued jobs are cancelled
    cancel = JobBulk("t1", JOB_QUEUED, to=JobStatus.CANCELLED, reason="user")
    changed = store.apply_bulk(cancel, clock.now())

    # Then the two jobs claimed meanwhile were read again, are no longer queued, and were
    # left to their pilot; the four others were cancelled
    assert len(taken) == 2
    assert changed == 4
    assert store.job_counts("t1") == {JobStatus.CANCELLED: 4, JobStatus.SENT: 2}
    assert {store.get_job(j.id).pilot_id for j in taken} == {"rival"}


def test_a_bulk_over_more_jobs_than_one_chunk_in_mixed_states_changes_every_one(
    store: FirestoreStore, clock: FakeClock
) -> None:
    # Given 1200 jobs, alternately 100 defined (paused) and 100 activated, so that the bulk's
    # chunks of 500 each hold both states (read by `status in`, ordered by index)
    add_split_task(store, clock, 1200)
    (pause,) = plan_action(Action.PAUSE, "t1", {})
    for first in range(0, 1200, 200):
        assert store.apply_bulk(pause, clock.now(), first_index=first, count=100) == 100

    # When all its queued jobs are closed in one call
    (close,) = plan_action(Action.FINISH, "t1", {"reason": "enough"})
    changed = store.apply_bulk(close, clock.now())

    # Then every one was, whatever its state and chunk
    assert changed == 1200
    assert store.job_counts("t1") == {JobStatus.CLOSED: 1200}


def test_a_bulk_reads_only_jobs_in_the_states_it_selects_from(
    store: FirestoreStore, clock: FakeClock, meter: FirestoreMeter
) -> None:
    # Given a task of 10 jobs, 3 of them sent to a pilot
    add_split_task(store, clock, 10)
    store.claim_jobs("q", "p1", 3, fits_all(), clock.now())
    meter.reset()

    # When its live jobs are flagged for killing
    (_, kill_live) = plan_action(Action.KILL, "t1", {"reason": "user"})
    assert store.apply_bulk(kill_live, clock.now()) == 3

    # Then only those 3 were read (and written), not the task's 7 queued jobs
    assert meter.snapshot() == {"reads": 3, "writes": 3, "deletes": 0}


def test_bulk_fields_refuse_a_change_they_cannot_store() -> None:
    with pytest.raises(ValueError, match="parents"):
        codec.bulk_fields({"parents": []})
    assert codec.bulk_fields({"status": JobStatus.CLOSED, "memory_mb": 4000}) == {
        "status": "closed",
        "memory_mb": 4000,
    }


# --- billed operations -------------------------------------------------------------------------


@pytest.fixture
def meter(store: FirestoreStore) -> FirestoreMeter:
    """Counts what `store` is billed from now on."""
    return meter_firestore(store._db)


def test_a_claim_writes_only_the_jobs_it_takes(
    store: FirestoreStore, clock: FakeClock, meter: FirestoreMeter
) -> None:
    # Given three activated jobs
    add_split_task(store, clock, 3)
    meter.reset()

    # When a lone pilot claims two
    claimed = store.claim_jobs("q", "p1", 2, fits_all(), clock.now())

    # Then it read two candidates and wrote two jobs, and no attempt record...
    assert meter.snapshot() == {"reads": 2, "writes": 2, "deletes": 0}
    # ... yet each job lists its attempt, as the job holds it
    for job in claimed:
        sent = Attempt(
            job_id=job.id, attempt=1, pilot_id="p1", status=JobStatus.SENT, started_at=clock.now()
        )
        assert store.attempts(job.id) == [sent]


def test_a_child_of_one_parent_is_released_without_querying_its_edges(
    store: FirestoreStore, clock: FakeClock, meter: FirestoreMeter
) -> None:
    # Given a parent with two children: one has no other parent, the other has two
    [parent, other] = add_jobs_with_parents(store, clock, "tp", [[], []])
    only, both = add_jobs_with_parents(store, clock, "tc", [[parent.id], [parent.id, other.id]])
    end_jobs(store, clock, [parent])
    # When the parent's children are released
    meter.reset()
    released = store.release_children([parent.id])
    # Then the child of one parent is summed up from the parent's edge; the other waits for
    # its second parent, found by its two queries: 2 reads (the two edges) + 1 (the parent) +
    # 2 (the queries), where it was 2 more (the first child's queries)
    assert released == {only.id: ParentsState(pending=False), both.id: ParentsState(pending=True)}
    assert meter.snapshot() == {"reads": 5, "writes": 3, "deletes": 0}


def test_an_edge_written_before_only_was_recorded_is_released_by_queries(
    store: FirestoreStore, clock: FakeClock
) -> None:
    # Given a child of one parent whose edge has no `only` (written by an earlier version)
    [parent] = add_jobs_with_parents(store, clock, "tp", [[]], max_attempts=1)
    [child] = add_jobs_with_parents(store, clock, "tc", [[parent.id]])
    edge = store._edges.document(codec.edge_id(parent.id, child.id))
    edge.update({"only": firestore.DELETE_FIELD})
    assert "only" not in (edge.get().to_dict() or {})
    # When its parent fails and is released, Then the child is told, as before
    end_jobs(store, clock, [parent], JobStatus.FAILED)
    assert store.release_children([parent.id]) == {
        child.id: ParentsState(pending=False, failed_parents=(parent.id,))
    }


def test_a_heartbeat_and_a_chunk_of_output_cost_what_the_cost_bench_counts(
    store: FirestoreStore, clock: FakeClock, meter: FirestoreMeter
) -> None:
    # Given a pilot holding one job, through the real handlers
    store.add_pilot(Pilot(id="p1", queue="q", status=PilotStatus.RUNNING, created_at=clock.t))
    add_split_task(store, clock, 1)
    [job] = store.claim_jobs("q", "p1", 1, fits_all(), clock.now())
    svc = Services(store=store, bus=_NoBus(), blobs=_NoBlobs(), clock=clock)

    # When it beats, and sends a chunk of the job's output, Then each costs what `skypanda
    # bench cost` counts per job-hour
    meter.reset()
    assert dispatch.heartbeat(svc, "p1", [job.id]).commands == []
    assert meter.snapshot() == {**HEARTBEAT_OPS, "deletes": 0}
    meter.reset()
    dispatch.append_log(svc, job.id, 1, b"some output\n", "p1")
    assert meter.snapshot() == {**LOG_FLUSH_OPS, "deletes": 0}


def test_changes_to_jobs_just_read_are_committed_without_reading_them_again(
    store: FirestoreStore, clock: FakeClock, meter: FirestoreMeter
) -> None:
    # Given two jobs sent to p1, read as a pilot's report reads them
    add_split_task(store, clock, 2)
    held = store.claim_jobs("q", "p1", 2, fits_all(), clock.now())
    jobs = store.get_jobs([j.id for j in held])
    meter.reset()

    # When both are reported finished
    changes = [report(jobs[j.id], JobStatus.FINISHED, clock) for j in held]
    assert store.apply_job_changes(changes) == [True, True]

    # Then each job (with its attempt record kept in it) and its job.ended event were
    # written, with no read
    assert meter.snapshot() == {"reads": 0, "writes": 4, "deletes": 0}
    for ch in changes:
        assert store.get_job(ch.after.id) == ch.after
        assert store.attempts(ch.after.id) == [ch.attempt]
    assert sorted(s.event.id for s in store.pending_events(10)) == sorted(
        e.id for ch in changes for e in ch.events
    )


def test_a_live_attempt_s_record_is_kept_with_its_job_until_the_attempt_ends(
    store: FirestoreStore, clock: FakeClock, meter: FirestoreMeter
) -> None:
    # Given a job sent to p1
    add_split_task(store, clock, 1)
    [job] = store.claim_jobs("q", "p1", 1, fits_all(), clock.now())
    meter.reset()

    # When it is reported running
    running = report(job, JobStatus.RUNNING, clock)
    assert store.apply_job_changes([running]) == [True]

    # Then only the job was written, and its attempt is listed as that report made it
    assert meter.snapshot()["writes"] == 1
    assert store.attempts(job.id) == [running.attempt]

    # And when it finishes, its attempt record is the final one
    finished = report(running.after, JobStatus.FINISHED, clock)
    assert store.apply_job_changes([finished]) == [True]
    assert store.attempts(job.id) == [finished.attempt]
    assert store.get_job(job.id) == finished.after


def test_a_stale_change_to_a_job_changed_elsewhere_loses(
    backend: FirestoreBackend, store: FirestoreStore, clock: FakeClock
) -> None:
    # Given a job sent to p1 that this store read, then another store moved to running
    add_split_task(store, clock, 1)
    [job] = store.claim_jobs("q", "p1", 1, fits_all(), clock.now())
    read = store.get_job(job.id)
    running = report(read, JobStatus.RUNNING, clock)
    assert backend.open().apply_job_changes([running]) == [True]

    # When this store applies a change computed from the job as it read it
    result = store.apply_job_changes([report(read, JobStatus.FINISHED, clock)])

    # Then the change loses and writes nothing
    assert result == [False]
    assert store.get_job(job.id) == running.after
    assert store.attempts(job.id) == [running.attempt]
    assert store.pending_events(10) == []


def test_a_change_to_a_job_touched_elsewhere_is_decided_by_a_transaction(
    backend: FirestoreBackend, store: FirestoreStore, clock: FakeClock, meter: FirestoreMeter
) -> None:
    # Given a job sent to p1 that this store read, then another store flagged for killing
    # (a write that leaves its status and attempt alone)
    add_split_task(store, clock, 1)
    [job] = store.claim_jobs("q", "p1", 1, fits_all(), clock.now())
    read = store.get_job(job.id)
    kill(backend.open(), "t1", clock.now())
    meter.reset()

    # When this store applies the pilot's report, computed from the job as it read it
    finished = report(read, JobStatus.FINISHED, clock)
    result = store.apply_job_changes([finished])

    # Then the commit against the version read failed, and a transaction read the job again:
    # the change was computed before the kill request, so it loses (the caller recomputes it
    # from a fresh read) and the kill request stands
    assert result == [False]
    assert meter.by_operation["apply_job_changes.reads"] == 1
    assert store.get_job(job.id).kill_requested
    assert store.get_job(job.id).status is JobStatus.SENT
    assert store.pending_events(10) == []


def test_an_event_already_in_the_outbox_is_not_added_again(
    store: FirestoreStore, clock: FakeClock
) -> None:
    # Given a job sent to p1 and read, whose job.ended event is already in the outbox
    add_split_task(store, clock, 1)
    [job] = store.claim_jobs("q", "p1", 1, fits_all(), clock.now())
    finished = report(store.get_job(job.id), JobStatus.FINISHED, clock)
    store.add_events(finished.events)
    [stored] = store.pending_events(10)

    # When the change is applied
    assert store.apply_job_changes([finished]) == [True]

    # Then the job changed, and the event is there once, as first stored
    assert store.get_job(job.id) == finished.after
    assert store.pending_events(10) == [stored]


def test_an_attempt_s_record_moves_out_of_its_job_only_when_a_new_attempt_replaces_it(
    store: FirestoreStore, clock: FakeClock, meter: FirestoreMeter
) -> None:
    # Given a job whose first attempt was lost (its record kept with the job until now)
    add_split_task(store, clock, 1)
    [first] = store.claim_jobs("q", "p1", 1, fits_all(), clock.now())
    lost = requeue_lost(store.get_job(first.id), clock.now(), None)
    meter.reset()
    assert store.apply_job_changes([lost]) == [True]

    # Then the requeue wrote the job and the lost attempt's record
    assert meter.snapshot()["writes"] == 2
    assert store.attempts(first.id) == [lost.attempt]

    # And when the second attempt finishes, its record stays in the job: both are listed
    [second] = store.claim_jobs("q", "p2", 1, fits_all(), clock.now())
    finished = report(store.get_job(second.id), JobStatus.FINISHED, clock)
    meter.reset()
    assert store.apply_job_changes([finished]) == [True]
    assert meter.snapshot()["writes"] == 2  # the job and its job.ended event
    assert store.attempts(first.id) == [lost.attempt, finished.attempt]


def test_a_change_ending_a_live_attempt_without_its_record_gets_one_from_the_job(
    clock: FakeClock,
) -> None:
    # Given a job sent to p1, and a change that cancels it without giving an attempt record
    job = make_jobs(make_task(clock, 1), clock.now())[0]
    sent = job.model_copy(
        update={"status": JobStatus.SENT, "pilot_id": "p1", "started_at": clock.now()}
    )
    cancelled = sent.model_copy(update={"status": JobStatus.CANCELLED, "ended_at": clock.now()})

    # When it is planned against the job as stored
    plan = plans.plan_changes([JobChange(sent, cancelled)], {job.id: ("sent", 1, False)})

    # Then it wins, and the attempt it ends is recorded as the job held it, with the job
    assert plan.won == [True]
    record = Attempt(
        job_id=job.id, attempt=1, pilot_id="p1", status=JobStatus.SENT, started_at=clock.now()
    )
    assert plan.attempts == {}
    assert codec.kept_attempt(plan.jobs[job.id]) == record


# --- outbox ------------------------------------------------------------------------------------


def test_outbox_sequence_numbers_are_ints_that_grow_across_a_restart(
    backend: FirestoreBackend, store: FirestoreStore
) -> None:
    store.add_events([ev.task_registered("a")])
    store.close()
    reopened = backend.open()
    reopened.add_events([ev.task_registered("b")])
    seqs = [s.seq for s in reopened.pending_events(10)]
    assert all(isinstance(seq, int) for seq in seqs)
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 2


def test_dead_events_lists_parked_events_with_their_error(store: FirestoreStore) -> None:
    store.add_events([ev.task_registered("a"), ev.task_registered("b")])
    first = store.pending_events(1)[0]
    store.mark_failed(first.seq, "no such task", dead=True)
    assert store.dead_events() == [("task-registered:a", "no such task")]


# --- errors ------------------------------------------------------------------------------------


class _Unreachable:
    """A client whose every read fails as a Firestore that cannot be reached does."""

    def collection(self, name: str) -> _Unreachable:
        return self

    def document(self, doc_id: str) -> _Unreachable:
        return self

    def get(self, **kwargs: Any) -> Any:
        raise gexc.ServiceUnavailable("failed to connect to all addresses")  # type: ignore[no-untyped-call]

    def close(self) -> None:
        pass


def test_an_unreachable_firestore_raises_backend_unavailable(clock: FakeClock) -> None:
    store = FirestoreStore(_Unreachable(), clock=clock.now)  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailable) as caught:
        store.get_task("t1")
    assert isinstance(caught.value.__cause__, gexc.ServiceUnavailable)
    assert caught.value.retryable
    store.close()


# --- indexes -----------------------------------------------------------------------------------


def _documents(clock: FakeClock) -> dict[str, codec.Doc]:
    """One document of each collection, as the store writes it."""
    task = make_task(clock, 1)
    job = make_jobs(task, clock.now())[0]
    attempt = Attempt(job_id=job.id, attempt=1, pilot_id="p", status=JobStatus.SENT)
    return {
        "tasks": codec.task_doc(task),
        "jobs": codec.job_doc(job),
        "attempts": codec.attempt_doc(attempt),
        "queues": codec.queue_doc(Queue(name="q")),
        "pilots": codec.pilot_doc(Pilot(id="p", queue="q", created_at=clock.now())),
        "events": codec.event_doc(ev.task_registered("t"), 1, clock.now()),
        "workflows": codec.workflow_doc(
            Workflow(
                id="w",
                spec=WorkflowSpec(
                    name="w", tasks=[WorkflowTask(name="a", command=["x"], n_jobs=1)]
                ),
                created_at=0,
                updated_at=0,
            )
        ),
        "edges": codec.edge_doc("p", "c", None),
        "webhooks": webhook_docs.webhook_doc(
            Webhook(id="h", owner="o", url="https://example.org/h", created_at=0)
        ),
        "deliveries": webhook_docs.delivery_doc(
            Delivery(
                id="d",
                owner="o",
                url="https://example.org/h",
                event_id="e",
                subject="tasks/t",
                headers={},
                body="{}",
                next_at=0,
                created_at=0,
            )
        ),
        "watch_batches": watch_docs.new_batch_doc(
            WatchRule(name="w", source="gs://b/", template={"name": "t", "command": ["x"]}),
            0,
            clock.now(),
        ),
        "audit": codec.audit_doc(
            AuditEntry(
                id=audit_id(clock.now()),
                at=clock.now(),
                actor="a",
                roles=["user"],
                action="kill_task",
                method="POST",
                path="/v1/tasks/t/kill",
                outcome=Outcome.DONE,
                status=200,
            )
        ),
    }


def test_the_index_file_names_only_fields_the_store_writes(clock: FakeClock) -> None:
    spec = json.loads(INDEXES.read_text())
    docs = _documents(clock)
    for index in spec["indexes"]:
        assert index["queryScope"] == "COLLECTION"
        fields = docs[index["collectionGroup"]]
        for field in index["fields"]:
            assert field["fieldPath"] in fields, (index["collectionGroup"], field)
            assert field.get("order") in ("ASCENDING", "DESCENDING")
    for override in spec["fieldOverrides"]:
        assert override["fieldPath"] in docs[override["collectionGroup"]], override
        assert override["indexes"] == []
