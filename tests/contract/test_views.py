"""Views (ports.views) on every backend: filters, paging to the end with no duplicate and no gap,
cursors refused when edited or reused with other filters, and the aggregates' values.

The SQLite store's plans are checked too: no monitor query scans the jobs table."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from typing import Any

import pytest

from skypanda.adapters.local.sqlite import SqliteStore
from skypanda.domain.errors import InvalidInput
from skypanda.domain.jobflow import JobChange, apply_report
from skypanda.domain.models import Job, JobReport
from skypanda.domain.states import JobStatus, PilotStatus, TaskStatus
from skypanda.domain.workflow import Workflow, WorkflowSpec, WorkflowTask
from skypanda.ports import Store
from skypanda.ports.views import (
    DURATION_EDGES,
    JobQuery,
    Page,
    TaskQuery,
    WorkflowQuery,
    encode_cursor,
)
from tests.support import FakeClock

from .conftest import add_split_task, fits_all, make_queue, make_task
from .helpers import kill, pilot


def all_pages(fetch: Any, limit: int) -> list[list[Any]]:
    """Every page of a list, following cursors to the end."""
    pages: list[list[Any]] = []
    cursor = None
    while True:
        page: Page[Any] = fetch(cursor=cursor, limit=limit)
        pages.append(page.items)
        if page.cursor is None:
            return pages
        cursor = page.cursor
        assert len(pages) < 100, "paging does not end"


def run_jobs(
    store: Store,
    clock: FakeClock,
    jobs: list[Job],
    outcome: dict[int, tuple[JobStatus, int | None, int | None]],
    *,
    seconds: float = 30.0,
) -> None:
    """Claim `jobs` and end each job index in `outcome` as (status, error code, peak MB),
    `seconds` after it was claimed."""
    claimed = {j.index: j for j in store.claim_jobs("q", "p1", len(jobs), fits_all(), clock.now())}
    clock.advance(seconds)
    changes = []
    for index, (status, code, rss) in outcome.items():
        job = claimed[index]
        report = JobReport(
            job_id=job.id,
            attempt=job.attempt,
            status=status,
            exit_code=0 if status is JobStatus.FINISHED else 1,
            error_code=code,
            error_diag=f"diag of {index}" if code else "",
            max_rss_mb=rss,
        )
        changes.append(apply_report(job, report, "p1", clock.now(), f"file:///l/{job.id}"))
    assert all(store.apply_job_changes(changes))


# --- lists -------------------------------------------------------------------------------------


def add_tasks(store: Store, clock: FakeClock) -> list[str]:
    """Seven tasks: three of ann's and four of bob's, two created at the same instant."""
    made = []
    for i, (owner, status) in enumerate(
        [("ann", TaskStatus.RUNNING), ("bob", TaskStatus.DONE), ("ann", TaskStatus.FAILED),
         ("bob", TaskStatus.RUNNING), ("bob", TaskStatus.FAILED), ("ann", TaskStatus.DONE),
         ("bob", TaskStatus.PAUSED)]
    ):  # fmt: skip
        if i != 4:  # tasks 3 and 4 share a creation time: the cursor must tell them apart
            clock.advance(10)
        task = make_task(clock, 1, task_id=f"t{i}", owner=owner, status=status)
        task = task.model_copy(
            update={"spec": task.spec.model_copy(update={"name": f"n{i % 2}-{i}"})}
        )
        store.add_task(task, [])
        made.append(task.id)
    return made


def test_tasks_page_newest_first_to_the_end_without_duplicates_or_gaps(
    store: Store, clock: FakeClock
) -> None:
    # Given seven tasks, two made at the same instant
    made = add_tasks(store, clock)

    # When they are read two at a time
    pages = all_pages(lambda **kw: store.task_page(TaskQuery(), **kw), 2)

    # Then every task comes once, newest first, on four pages, the last one short
    seen = [t.id for page in pages for t in page]
    assert seen == made[::-1]
    assert [len(p) for p in pages] == [2, 2, 2, 1]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (TaskQuery(owner="ann"), ["t5", "t2", "t0"]),
        (TaskQuery(statuses=frozenset({TaskStatus.FAILED})), ["t4", "t2"]),
        (TaskQuery(statuses=frozenset({TaskStatus.FAILED, TaskStatus.PAUSED})), ["t6", "t4", "t2"]),
        (
            TaskQuery(owner="bob", statuses=frozenset({TaskStatus.RUNNING, TaskStatus.DONE})),
            ["t3", "t1"],
        ),
        (TaskQuery(name_prefix="n1-"), ["t5", "t3", "t1"]),
        (TaskQuery(owner="bob", name_prefix="n0"), ["t6", "t4"]),
    ],
)
def test_tasks_page_filters(
    store: Store, clock: FakeClock, query: TaskQuery, expected: list[str]
) -> None:
    add_tasks(store, clock)
    for limit in (1, 2, 50):  # the same tasks whatever the page size
        pages = all_pages(lambda q=query, **kw: store.task_page(q, **kw), limit)
        assert [t.id for page in pages for t in page] == expected


def test_tasks_page_time_window(store: Store, clock: FakeClock) -> None:
    add_tasks(store, clock)
    t1 = store.get_task("t1").created_at
    t5 = store.get_task("t5").created_at
    page = store.task_page(TaskQuery(since=t1, until=t5), cursor=None, limit=10)
    assert {t.id for t in page.items} == {"t1", "t2", "t3", "t4"}
    assert page.cursor is None


def test_tasks_page_of_a_workflow(store: Store, clock: FakeClock) -> None:
    spec = WorkflowSpec(
        name="wf",
        tasks=[WorkflowTask(name=n, command=["x"], queue="q", n_jobs=1) for n in ("a", "b")],
    )
    now = clock.now()
    wf = Workflow(id="w1", spec=spec, owner="ann", created_at=now, updated_at=now)
    tasks = [
        make_task(clock, 1, task_id=f"wt{i}", owner="ann").model_copy(update={"workflow_id": "w1"})
        for i in range(2)
    ]
    store.add_workflow(wf, tasks, [])
    store.add_task(make_task(clock, 1, task_id="alone", owner="ann"), [])

    page = store.task_page(TaskQuery(workflow_id="w1"), cursor=None, limit=10)
    assert {t.id for t in page.items} == {"wt0", "wt1"}
    wfs = store.workflow_page(WorkflowQuery(owner="ann"), cursor=None, limit=10)
    assert [w.id for w in wfs.items] == ["w1"]
    none = store.workflow_page(WorkflowQuery(owner="bob"), cursor=None, limit=10)
    assert none.items == [] and none.cursor is None


def test_workflows_page_to_the_end(store: Store, clock: FakeClock) -> None:
    spec = WorkflowSpec(
        name="wf", tasks=[WorkflowTask(name="a", command=["x"], queue="q", n_jobs=1)]
    )
    for i in range(5):
        clock.advance(1)
        now = clock.now()
        status = "failed" if i % 2 else "running"
        wf = Workflow(id=f"w{i}", spec=spec, status=status, created_at=now, updated_at=now)
        store.add_workflow(wf, [], [])
    pages = all_pages(lambda **kw: store.workflow_page(WorkflowQuery(), **kw), 2)
    assert [w.id for p in pages for w in p] == ["w4", "w3", "w2", "w1", "w0"]
    failed = WorkflowQuery(statuses=frozenset({"failed"}))  # type: ignore[arg-type]
    pages = all_pages(lambda **kw: store.workflow_page(failed, **kw), 1)
    assert [w.id for p in pages for w in p] == ["w3", "w1"]


def test_bad_cursors_are_refused_with_a_clear_error(store: Store, clock: FakeClock) -> None:
    add_tasks(store, clock)
    good = store.task_page(TaskQuery(), cursor=None, limit=2).cursor
    assert good is not None
    bad = [
        "not a cursor!",
        "AAAA",
        good[:-3],
        good + "x" * 2000,
        encode_cursor("jobs", "whatever", [1]),  # another list's
        encode_cursor("tasks", "0" * 12, [1.0, 1]),  # made up
    ]
    for cursor in bad:
        with pytest.raises(InvalidInput, match="cursor"):
            store.task_page(TaskQuery(), cursor=cursor, limit=2)
    # A cursor is valid only with the filters it was given with.
    with pytest.raises(InvalidInput, match="filters"):
        store.task_page(TaskQuery(owner="ann"), cursor=good, limit=2)


# --- a task's jobs -----------------------------------------------------------------------------


def test_jobs_page_filters_by_state_and_error_code_and_pages_to_the_end(
    store: Store, clock: FakeClock
) -> None:
    # Given a task of 9 jobs: 0-2 finished, 3-5 failed (code 1100 for 3 and 5, 1200 for 4),
    # 6-8 still running
    store.put_queue(make_queue())
    jobs = add_split_task(store, clock, 9, max_attempts=1)
    outcome: dict[int, tuple[JobStatus, int | None, int | None]] = {
        0: (JobStatus.FINISHED, None, 100), 1: (JobStatus.FINISHED, None, 200),
        2: (JobStatus.FINISHED, None, None), 3: (JobStatus.FAILED, 1100, 300),
        4: (JobStatus.FAILED, 1200, None), 5: (JobStatus.FAILED, 1100, None),
    }  # fmt: skip
    run_jobs(store, clock, jobs, outcome)

    def indexes(query: JobQuery, limit: int) -> list[int]:
        pages = all_pages(lambda **kw: store.job_page("t1", query, **kw), limit)
        return [j.index for p in pages for j in p]

    # Then each filter gives its jobs in index order, whatever the page size
    for limit in (1, 2, 4, 100):
        assert indexes(JobQuery(), limit) == list(range(9))
        assert indexes(JobQuery(statuses=frozenset({JobStatus.FAILED})), limit) == [3, 4, 5]
        both = frozenset({JobStatus.FINISHED, JobStatus.SENT})
        assert indexes(JobQuery(statuses=both), limit) == [0, 1, 2, 6, 7, 8]
        assert indexes(JobQuery(error_code=1100), limit) == [3, 5]
        failed_1200 = JobQuery(statuses=frozenset({JobStatus.FAILED}), error_code=1200)
        assert indexes(failed_1200, limit) == [4]
    assert store.job_page("nope", JobQuery(), cursor=None, limit=5) == Page([], None)

    # And the peak memory the pilot reported is on the job and its attempt
    assert store.get_job(jobs[3].id).max_rss_mb == 300
    assert [a.max_rss_mb for a in store.attempts(jobs[3].id)] == [300]
    assert store.get_job(jobs[2].id).max_rss_mb is None


def test_error_summary_counts_failed_attempts_by_code(store: Store, clock: FakeClock) -> None:
    # Given a task whose jobs fail: two attempts with 1100 (both retried), then one with 1200
    store.put_queue(make_queue())
    jobs = add_split_task(store, clock, 4, max_attempts=2)
    fail, done = JobStatus.FAILED, JobStatus.FINISHED
    first = {0: (fail, 1100, None), 1: (done, None, None), 2: (fail, 1100, None)}
    run_jobs(store, clock, jobs, {**first, 3: (done, None, None)})
    assert store.get_job(jobs[0].id).status is JobStatus.ACTIVATED  # retried
    run_jobs(store, clock, jobs, {0: (fail, 1200, None), 2: (done, None, None)})
    add_split_task(store, clock, 2, task_id="t1x")  # another task, its id extends this one's

    summary = store.error_summary("t1")

    assert [(e.error_code, e.count) for e in summary] == [(1100, 2), (1200, 1)]
    top = summary[0]
    assert top.example_job in {jobs[0].id, jobs[2].id}
    assert top.diag in {"diag of 0", "diag of 2"}
    assert store.error_summary("t1x") == []


def test_aggregates_of_a_task(store: Store, clock: FakeClock) -> None:
    store.put_queue(make_queue())
    jobs = add_split_task(store, clock, 6, max_attempts=1)
    start = clock.now()
    clock.advance(1)
    run_jobs(
        store,
        clock,
        jobs[:3],
        {
            0: (JobStatus.FINISHED, None, 512),
            1: (JobStatus.FINISHED, None, 64),
            2: (JobStatus.FAILED, 1300, 2000),
        },
        seconds=3,
    )
    run_jobs(store, clock, jobs[3:], {3: (JobStatus.FINISHED, None, None)}, seconds=300)

    # Durations: 3 s (two jobs) and 300 s (one), in 1-2-5 buckets
    hist = {b.start: b.count for b in store.duration_histogram("t1")}
    assert hist == {2.0: 2, 200.0: 1}
    assert set(hist) <= set(DURATION_EDGES)

    # Memory: what the pilots reported against what was asked
    mem = {(m.job_id, m.requested_mb, m.used_mb) for m in store.memory_use("t1")}
    req = jobs[0].resources.memory_mb
    assert mem == {(jobs[0].id, req, 512), (jobs[1].id, req, 64), (jobs[2].id, req, 2000)}
    assert len(store.memory_use("t1", limit=1)) == 1

    # Timeline: first point all waiting, last point as the jobs are now
    clock.advance(1)
    line = store.state_timeline("t1", points=10)
    assert len(line) == 10 and line[0]["t"] <= start
    assert line[0]["activated"] == 6 and line[0]["running"] == 0
    assert line[-1]["finished"] == 3 and line[-1]["failed"] == 1 and line[-1]["running"] == 2
    assert all(sum(v for k, v in p.items() if k != "t") == 6 for p in line)


def test_time_windows(store: Store, clock: FakeClock) -> None:
    store.put_queue(make_queue())
    jobs = add_split_task(store, clock, 5, owner="ann", max_attempts=1)
    clock.set(6000.0 * 60)  # on a minute
    run_jobs(
        store,
        clock,
        jobs[:2],
        {0: (JobStatus.FINISHED, None, None), 1: (JobStatus.FAILED, 1100, None)},
        seconds=0,
    )
    clock.advance(61)
    run_jobs(
        store,
        clock,
        jobs[2:4],
        {2: (JobStatus.FAILED, 1100, None), 3: (JobStatus.FAILED, 1200, None)},
        seconds=0,
    )
    m0 = 6000.0 * 60

    got = {(b.start, b.label): b.count for b in store.ended_per_minute(since=m0 - 600)}
    assert got == {(m0, "finished"): 1, (m0, "failed"): 1, (m0 + 60, "failed"): 2}
    assert store.ended_per_minute(since=m0 + 60, owner="ann") == [
        b for b in store.ended_per_minute(since=m0 + 60) if b.label == "failed"
    ]
    assert store.ended_per_minute(since=m0 - 600, owner="bob") == []
    task = {(b.start, b.label): b.count for b in store.ended_per_minute(since=m0, task_id="t1")}
    assert task == got

    codes = [(b.label, b.count) for b in store.failures_by_code(since=m0 - 600)]
    assert codes == [("1100", 2), ("1200", 1)]
    assert [b.label for b in store.failures_by_code(since=m0 - 600, limit=1)] == ["1100"]
    # A window starts at the minute `since` falls in
    later = [(b.label, b.count) for b in store.failures_by_code(since=m0 + 61)]
    assert later == [("1100", 1), ("1200", 1)]
    assert store.failures_by_code(since=m0 + 61, owner="bob") == []


def test_time_windows_follow_kills_and_undone_ends(store: Store, clock: FakeClock) -> None:
    # Given a task of 4 jobs: one fails, then the task is killed (its 3 queued jobs cancelled)
    store.put_queue(make_queue())
    jobs = add_split_task(store, clock, 4, max_attempts=1)
    clock.set(7000.0 * 60)
    m0 = clock.now()
    run_jobs(store, clock, jobs[:1], {0: (JobStatus.FAILED, 1100, None)}, seconds=0)
    kill(store, "t1", "enough", now=clock.now())

    def ends() -> dict[str, int]:
        return {b.label: b.count for b in store.ended_per_minute(since=m0, task_id="t1")}

    assert ends() == {"failed": 1, "cancelled": 3}
    assert {b.label: b.count for b in store.ended_per_minute(since=m0)} == ends()

    # When the failed job is run again (a user's retry), its end is taken back
    failed = store.get_job(jobs[0].id)
    again = failed.model_copy(update={"status": JobStatus.ACTIVATED, "ended_at": None,
                                      "attempt": 2, "error_code": None})  # fmt: skip
    assert store.apply_job_changes([JobChange(failed, again)]) == [True]
    assert ends() == {"cancelled": 3}
    assert store.failures_by_code(since=m0) == []


def test_sqlite_counts_the_ends_of_an_older_database_when_opened(
    tmp_path: Any, clock: FakeClock
) -> None:
    # Given a database whose jobs ended before the per-minute counts existed
    path = tmp_path / "old.db"
    store = SqliteStore(path, clock=clock.now)
    store.put_queue(make_queue())
    jobs = add_split_task(store, clock, 3, max_attempts=1)
    clock.set(8000.0 * 60)
    fail, done = JobStatus.FAILED, JobStatus.FINISHED
    run_jobs(store, clock, jobs, {0: (fail, 1200, None), 1: (done, None, None)}, seconds=0)
    with store._tx() as db:
        for name in ("ends_by_minute", "ends_by_owner", "ends_by_task", "fails_by_code",
                     "fails_by_owner_code"):  # fmt: skip
            db.execute(f"DROP TABLE {name}")
        for trigger in ("jobs_ends_insert", "jobs_ends_update", "jobs_ends_delete"):
            db.execute(f"DROP TRIGGER {trigger}")
    store.close()

    # When it is opened by this version
    reopened = SqliteStore(path, clock=clock.now)
    try:
        # Then its ends are counted, once
        got = {b.label: b.count for b in reopened.ended_per_minute(since=8000.0 * 60)}
        assert got == {"failed": 1, "finished": 1}
        assert [(b.label, b.count) for b in reopened.failures_by_code(since=0)] == [("1200", 1)]
        reopened.close()
        again = SqliteStore(path, clock=clock.now)
        assert {b.label: b.count for b in again.ended_per_minute(since=8000.0 * 60)} == got
        again.close()
    finally:
        reopened.close()


# --- the fleet ---------------------------------------------------------------------------------


def test_queue_views_and_pilot_pages(store: Store, clock: FakeClock) -> None:
    store.put_queue(make_queue("q"))
    store.put_queue(make_queue("r"))
    add_split_task(store, clock, 4)
    store.note_scaling("q", "launched 2: 4 activated", clock.now())
    for i in range(5):
        clock.advance(1)
        p = pilot(f"p{i}", clock, queue="q" if i < 4 else "r")
        store.add_pilot(p)
        if i % 2:
            assert store.update_pilot(
                p.model_copy(update={"status": PilotStatus.RUNNING}), [PilotStatus.SUBMITTED]
            )

    views = {v.queue: v for v in store.queue_views()}
    assert views["q"].activated == 4 and views["r"].activated == 0
    assert views["q"].pilots == {PilotStatus.SUBMITTED: 2, PilotStatus.RUNNING: 2}
    assert views["r"].pilots == {PilotStatus.SUBMITTED: 1}
    assert views["q"].scaler_note.startswith("launched 2") and views["q"].scaler_note_at is not None
    assert views["r"].scaler_note == ""

    everyone = all_pages(lambda **kw: store.pilot_page(**kw), 2)
    assert [p.id for page in everyone for p in page] == ["p4", "p3", "p2", "p1", "p0"]
    on_q = all_pages(lambda **kw: store.pilot_page(queue="q", **kw), 1)
    assert [p.id for page in on_q for p in page] == ["p3", "p2", "p1", "p0"]
    running = all_pages(lambda **kw: store.pilot_page(statuses=[PilotStatus.RUNNING], **kw), 1)
    assert [p.id for page in running for p in page] == ["p3", "p1"]
    with pytest.raises(InvalidInput, match="filters"):
        first = store.pilot_page(limit=1)
        store.pilot_page(queue="r", cursor=first.cursor, limit=1)


# --- SQLite: every monitor query reads along an index ------------------------------------------


def test_sqlite_plans_never_scan_jobs(tmp_path: Any, clock: FakeClock) -> None:
    store = SqliteStore(tmp_path / "plans.db", clock=clock.now)
    plans: list[str] = []
    real = store._read

    def explain(sql: str, args: Any = ()) -> list[sqlite3.Row]:
        plan = store._conn().execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
        plans.append(sql + "\n  " + "\n  ".join(r["detail"] for r in plan))
        return real(sql, args)

    store._read = explain  # type: ignore[method-assign]
    try:
        store.put_queue(make_queue())
        jobs = add_split_task(store, clock, 4)
        run_jobs(store, clock, jobs, {0: (JobStatus.FAILED, 1100, 10)})
        plans.clear()
        store.task_page(
            TaskQuery(owner="a", statuses=frozenset({TaskStatus.DONE})), cursor=None, limit=5
        )
        store.task_page(TaskQuery(statuses=frozenset({TaskStatus.DONE})), cursor=None, limit=5)
        store.workflow_page(WorkflowQuery(owner="a"), cursor=None, limit=5)
        store.job_page("t1", JobQuery(statuses=frozenset({JobStatus.FAILED})), cursor=None, limit=5)
        store.job_page("t1", JobQuery(error_code=1100), cursor=None, limit=5)
        store.error_summary("t1")
        store.duration_histogram("t1")
        store.memory_use("t1")
        store.state_timeline("t1")
        store.ended_per_minute(since=0)
        store.ended_per_minute(since=0, owner="a")
        store.ended_per_minute(since=0, task_id="t1")
        store.failures_by_code(since=0)
        store.failures_by_code(since=0, owner="a")
        store.queue_views()
        store.pilot_page(queue="q", statuses=[PilotStatus.RUNNING])
    finally:
        store.close()
    text = "\n".join(plans)
    print(text)
    tables = ("jobs", "attempts", "tasks", "workflows", "ends_by_minute", "ends_by_owner",
              "ends_by_task", "fails_by_code", "fails_by_owner_code")  # fmt: skip
    for table in tables:
        assert f"SCAN {table}" not in text, table


def test_a_cursor_holds_in_another_process() -> None:
    # A cursor made by one server process is given back to another (Cloud Functions
    # instances, a restart): the query's fingerprint must not depend on string hashing.
    code = (
        "from skypanda.ports.views import query_key, TaskQuery\n"
        "from skypanda.domain.states import TaskStatus as S\n"
        "print(query_key('tasks', TaskQuery(owner='a', statuses=frozenset(S))))"
    )
    keys = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(keys) == 1
