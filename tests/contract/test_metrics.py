"""MetricsReader contract (`skypanda.ports.metrics`): the counts `GET /metrics` serves, read from
the store. Every test runs against every backend in `conftest.BACKENDS`; SQLite's reads are
also held to their query plans (indexes only, no table scan)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from skypanda.adapters.local.sqlite import SqliteStore
from skypanda.adapters.local.sqlite.metrics import DEPTH_SQL, ENDS_SQL, PILOTS_SQL
from skypanda.domain.bulk import Action
from skypanda.domain.jobflow import JobChange, apply_report
from skypanda.domain.models import JobReport
from skypanda.domain.states import JOB_FINAL, JobStatus, PilotStatus
from skypanda.ports import Store
from skypanda.wire.codes import ErrorCode
from tests.support import FakeClock

from .conftest import add_split_task, fits_all, make_queue
from .helpers import apply_action, pilot, report


def test_counts_jobs_ended_queue_depth_and_pilots_by_state(store: Store, clock: FakeClock) -> None:
    # Given two queues, a task of 5 jobs on q (one attempt each) of which 3 were claimed:
    # 2 finished, 1 failed with an error code; and pilots in three states
    store.put_queue(make_queue("q"))
    store.put_queue(make_queue("r"))
    add_split_task(store, clock, 5, max_attempts=1)
    a, b, c = store.claim_jobs("q", "p1", 3, fits_all(), clock.now())
    failed = JobReport(job_id=c.id, attempt=1, status=JobStatus.FAILED, exit_code=3,
                       error_code=ErrorCode.PAYLOAD_FAILED)  # fmt: skip
    changes = [report(a, JobStatus.FINISHED, clock), report(b, JobStatus.FINISHED, clock),
               apply_report(c, failed, "p1", clock.now(), "file:///log")]  # fmt: skip
    assert all(store.apply_job_changes(changes))
    store.add_pilot(pilot("p1", clock, status=PilotStatus.RUNNING))
    store.add_pilot(pilot("p2", clock))
    store.add_pilot(pilot("p3", clock, queue="r", status=PilotStatus.FINISHED))

    # When the metrics' counts are read
    counts = store.metric_counts()

    # Then each is what the store holds
    ends = {(e.status, e.error_code): e.count for e in counts.job_ends}
    assert ends == {(JobStatus.FINISHED, None): 2, (JobStatus.FAILED, ErrorCode.PAYLOAD_FAILED): 1}
    assert counts.activated == {"q": 2, "r": 0}
    pilots = Counter({(p.queue, p.status): p.count for p in counts.pilots})
    assert pilots == {("q", PilotStatus.RUNNING): 1, ("q", PilotStatus.SUBMITTED): 1,
                      ("r", PilotStatus.FINISHED): 1}  # fmt: skip


def _ended_per_store(store: Store, task_id: str) -> dict[tuple[JobStatus, int | None], int]:
    """What the jobs themselves say: final jobs by (status, error code)."""
    jobs = store.list_jobs(task_id, limit=1000)
    return dict(Counter((j.status, j.error_code) for j in jobs if j.status in JOB_FINAL))


def _ended_per_metrics(store: Store) -> dict[tuple[JobStatus, int | None], int]:
    return {(e.status, e.error_code): e.count for e in store.metric_counts().job_ends}


def test_jobs_ended_follow_every_change_of_the_jobs(store: Store, clock: FakeClock) -> None:
    # Given a task's jobs that end, one of them failed with a code
    store.put_queue(make_queue("q"))
    jobs = add_split_task(store, clock, 6, max_attempts=1)
    a, b = store.claim_jobs("q", "p1", 2, fits_all(), clock.now())
    failed = JobReport(job_id=b.id, attempt=1, status=JobStatus.FAILED, exit_code=1,
                       error_code=ErrorCode.OUT_OF_MEMORY)  # fmt: skip
    store.apply_job_changes([report(a, JobStatus.FINISHED, clock),
                             apply_report(b, failed, "p1", clock.now(), "file:///l")])  # fmt: skip
    assert _ended_per_metrics(store) == _ended_per_store(store, jobs[0].task_id)
    assert store.metric_counts().activated == {"q": 4}
    # When the failed job is retried (it leaves its final state) and the task is killed
    # (the queued jobs are cancelled)
    again = store.get_job(b.id)
    back = again.model_copy(update={"status": JobStatus.ACTIVATED, "attempt": 2,
                                    "error_code": None, "exit_code": None})  # fmt: skip
    assert store.apply_job_changes([JobChange(again, back)]) == [True]
    assert store.metric_counts().activated == {"q": 5}
    store.put_queue(make_queue("r"))
    apply_action(store, jobs[0].task_id, Action.MOVE, {"queue": "r"}, now=clock.now())
    assert store.metric_counts().activated == {"q": 0, "r": 5}  # reassigned: depth follows
    apply_action(store, jobs[0].task_id, Action.KILL, now=clock.now())
    # Then the counts are still the jobs' own (nothing waits: the retried job was cancelled too)
    assert store.metric_counts().activated == {"q": 0, "r": 0}
    counted = _ended_per_metrics(store)
    assert counted == _ended_per_store(store, jobs[0].task_id)
    assert counted[(JobStatus.FINISHED, None)] == 1
    assert (JobStatus.FAILED, ErrorCode.OUT_OF_MEMORY) not in counted


def test_an_empty_store_counts_nothing(store: Store) -> None:
    counts = store.metric_counts()
    assert (counts.job_ends, counts.activated, counts.pilots) == ((), {}, ())


def test_sqlite_reads_a_rollup_and_indexes_only(clock: FakeClock) -> None:
    # Given the embedded store's three reads
    store = SqliteStore(":memory:", clock=clock.now)
    try:
        db = store._conn()
        plans = {
            name: " ".join(r[3] for r in db.execute(f"EXPLAIN QUERY PLAN {sql}", args))
            for name, sql, args in (
                ("ends", ENDS_SQL, ()),
                ("depth", DEPTH_SQL, ()),
                ("pilots", PILOTS_SQL, ()),
            )
        }
    finally:
        store.close()
    # Then jobs ended and queue depth are read from their rollups (a few dozen rows), pilots
    # from their covering index: no read of the jobs
    assert plans["ends"] == "SCAN job_end_counts", plans
    assert plans["depth"] == "SCAN queue_depth", plans
    assert "COVERING INDEX pilots_by_queue" in plans["pilots"], plans


def test_sqlite_fills_the_rollup_from_the_jobs_of_an_older_database(
    tmp_path: Path, clock: FakeClock
) -> None:
    # Given a database with ended jobs, made before the rollup existed
    path = tmp_path / "old.db"
    store = SqliteStore(path, clock=clock.now)
    store.put_queue(make_queue("q"))
    jobs = add_split_task(store, clock, 4)
    store.apply_job_changes([report(j, JobStatus.FINISHED, clock) for j in
                             store.claim_jobs("q", "p1", 3, fits_all(), clock.now())])  # fmt: skip
    db = store._conn()
    for kind in ("job_ends", "queue_depth"):
        for name in ("insert", "update", "delete"):
            db.execute(f"DROP TRIGGER {kind}_{name}")
    db.execute("DROP TABLE job_end_counts")
    db.execute("DROP TABLE queue_depth")
    store.close()
    # When a store opens it again
    reopened = SqliteStore(path, clock=clock.now)
    try:
        # Then the rollups hold what the jobs say, and follow them from then on
        assert _ended_per_metrics(reopened) == {(JobStatus.FINISHED, None): 3}
        assert reopened.metric_counts().activated == {"q": 1}
        [last] = reopened.claim_jobs("q", "p1", 1, fits_all(), clock.now())
        assert reopened.metric_counts().activated == {"q": 0}
        reopened.apply_job_changes([report(last, JobStatus.FINISHED, clock)])
        assert _ended_per_metrics(reopened) == _ended_per_store(reopened, jobs[0].task_id)
    finally:
        reopened.close()
