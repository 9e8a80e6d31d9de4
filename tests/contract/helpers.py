"""Steps the contract tests share: claiming, reporting, ending jobs, building dependencies,
outbox shortcuts, and task actions carried out as the handlers do (`apply_action`)."""

from __future__ import annotations

from typing import Any

from skypanda.domain.bulk import Action, plan
from skypanda.domain.events import Event, EventType
from skypanda.domain.jobflow import JobChange, apply_report, new_job
from skypanda.domain.models import Job, JobReport, JobSpec, Pilot
from skypanda.domain.states import JobStatus, TaskStatus
from skypanda.ports import Store
from tests.support import FakeClock

from .conftest import fits_all, make_task


def claim_all(store: Store, clock: FakeClock, pilot_id: str = "p1", queue: str = "q") -> list[Job]:
    return store.claim_jobs(queue, pilot_id, 1000, fits_all(), clock.now())


def report(job: Job, status: JobStatus, clock: FakeClock, pilot_id: str = "p1") -> JobChange:
    """What a pilot's report of `status` for the job's current attempt would write."""
    exit_code = None if status in (JobStatus.STARTING, JobStatus.RUNNING) else 0
    r = JobReport(job_id=job.id, attempt=job.attempt, status=status, exit_code=exit_code)
    return apply_report(job, r, pilot_id, clock.now(), f"file:///logs/{job.id}/{job.attempt}")


def flagged(job: Job, status: JobStatus, clock: FakeClock, **flags: str) -> JobChange:
    """What a pilot's report of `status` (finished: exit 0, else 1) with `flags` would write."""
    exit_code = 0 if status is JobStatus.FINISHED else 1
    r = JobReport(
        job_id=job.id, attempt=job.attempt, status=status, exit_code=exit_code, flags=flags
    )
    return apply_report(job, r, "p1", clock.now(), f"file:///logs/{job.id}/{job.attempt}")


def event(n: int) -> Event:
    return Event(id=f"e{n}", type=EventType.TICK, subject="ticks", data={"n": n})


def pending_ids(store: Store) -> list[str]:
    return [stored.event.id for stored in store.pending_events(1000)]


def pilot(pilot_id: str, clock: FakeClock, *, queue: str = "q", **fields: object) -> Pilot:
    return Pilot(id=pilot_id, queue=queue, created_at=clock.now(), **fields)


def ids(jobs: list[Job]) -> list[str]:
    return [j.id for j in jobs]


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


def apply_action(
    store: Store,
    task_id: str,
    action: Action,
    args: dict[str, Any] | None = None,
    *,
    now: float,
    to: TaskStatus | None = None,
    reason: str = "",
) -> int:
    """A task action as `handlers.bulk` carries it out: the task moves to `to` (when given),
    compare-and-set from its status as read; then every bulk of `plan()` is applied, page by
    page of the store's `bulk_page` over the task's job indexes. Returns how many jobs changed.

    Raises what the store raises: NotFound (no such task), IllegalTransition (`to` cannot
    follow the task's status)."""
    args = args or {}
    task = store.get_task(task_id, counts=False)
    if to is not None:
        assert store.set_task_status(task_id, [task.status], to, reason=reason)
    bulks = plan(action, task_id, args)
    page = store.bulk_page
    if page is None:
        return sum(store.apply_bulk(b, now) for b in bulks)
    return sum(
        store.apply_bulk(b, now, first_index=first, count=page)
        for first in range(0, max(task.n_jobs, 1), page)
        for b in bulks
    )


def kill(store: Store, task_id: str, reason: str, *, now: float) -> int:
    """Kill the task as `task_actions.kill` does: aborted, queued jobs cancelled, live ones
    flagged for their pilots."""
    args = {"reason": reason}
    return apply_action(
        store, task_id, Action.KILL, args, now=now, to=TaskStatus.ABORTED, reason=reason
    )
