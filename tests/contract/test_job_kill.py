"""Killing jobs one by one (`handlers.job_actions`, PanDA's killJobs) on every backend: a
queued job ends cancelled at once and what follows any end follows (its children are not
run, its task and workflow end as for a job that failed); a job a pilot holds is flagged,
its pilot is told to kill it, and its attempt then ends cancelled, never retried.

The real handlers run over the store under test; the outbox is delivered by a loop driven
here (the router, or Eventarc, in a running system)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from skypanda.cli.bench_cloud import _NoBlobs, _NoBus
from skypanda.domain.errors import Conflict
from skypanda.domain.events import Event, TaskRef
from skypanda.domain.job_kill import JobKill, KillResult
from skypanda.domain.jobflow import JobChange
from skypanda.domain.models import JobReport, Resources, TaskSpec
from skypanda.domain.states import JobStatus, TaskStatus, WorkflowStatus
from skypanda.domain.workflow import WorkflowSpec
from skypanda.handlers import dispatch, job_actions, split, workflow
from skypanda.handlers.pipeline import Outcome, Pipeline
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from skypanda.ports import Store
from skypanda.wire.codes import ErrorCode
from tests.support import FakeClock

from .conftest import make_queue


def services(store: Store, clock: FakeClock) -> Services:
    store.put_queue(make_queue("q"))
    return Services(store=store, bus=_NoBus(), blobs=_NoBlobs(), clock=clock)


def deliver(svc: Services) -> list[Event]:
    """Deliver the outbox until it is empty (the events that deliveries add, too)."""
    pipeline, delivered = Pipeline(svc), list[Event]()
    for _ in range(50):
        pending = svc.outbox.pending_events(50)
        if not pending:
            return delivered
        for stored in pending:
            result = pipeline.deliver(stored.event, tries=stored.tries, transport="test")
            assert result.outcome is Outcome.DELIVERED, result
            svc.outbox.mark_delivered([stored.seq], svc.clock.now())
            delivered.append(stored.event)
    raise AssertionError("the outbox never drained")


def pair(svc: Services) -> dict[str, Any]:
    """A workflow of alice's: task a (one job) -> task b (one job, waiting for a's), started;
    returns the workflow's id and each task's job by name."""
    tasks = [
        {"name": "a", "command": ["true"], "queue": "q", "n_jobs": 1},
        {"name": "b", "command": ["true"], "queue": "q", "n_jobs": 1, "depends": [{"task": "a"}]},
    ]
    spec = WorkflowSpec.model_validate({"name": "w", "tasks": tasks})
    wf = workflow.submit_workflow(svc, spec, "alice")
    workflow.start(svc, wf.id)
    jobs = {t.spec.name: svc.jobs.list_jobs(t.id)[0] for t in svc.workflows.workflow_tasks(wf.id)}
    return {"id": wf.id, **jobs}


def results(done: Sequence[JobKill]) -> list[tuple[str, KillResult]]:
    return [(d.job_id, d.result) for d in done]


def test_a_queued_job_killed_ends_cancelled_and_its_child_and_workflow_follow(
    store: Store, clock: FakeClock
) -> None:
    # Given alice's workflow a -> b, a's job activated and b's waiting for it
    svc = services(store, clock)
    wf = pair(svc)
    a, b = wf["a"], wf["b"]
    assert (a.status, b.status) == (JobStatus.ACTIVATED, JobStatus.DEFINED)
    deliver(svc)

    # When bob asks to kill a's job, Then it is not his: nothing is written
    assert results(job_actions.kill_jobs(svc, [a.id], "bob")) == [(a.id, KillResult.NOT_YOURS)]
    assert store.get_job(a.id) == a

    # When alice kills it (with an id that names no job)
    clock.advance(3)
    done = job_actions.kill_jobs(svc, [a.id, "t0-nosuchjob"], "alice")

    # Then it is cancelled at once, with her name as the reason; the unknown one is said so
    assert results(done) == [(a.id, KillResult.KILLED), ("t0-nosuchjob", KillResult.NOT_FOUND)]
    killed = store.get_job(a.id)
    assert (killed.status, killed.error_diag, killed.ended_at) == (
        JobStatus.CANCELLED, "killed by alice", clock.t,
    )  # fmt: skip
    assert store.claim_jobs("q", "p1", 5, Resources(memory_mb=100_000, cores=64), clock.t) == []

    # And once its end is delivered, what follows a job that did not finish follows: its
    # child is cancelled (a missing parent), both tasks end, and the workflow ends failed
    deliver(svc)
    child = store.get_job(b.id)
    assert child.status is JobStatus.CANCELLED and "missing parent" in child.error_diag
    tasks = {t.spec.name: t.status for t in svc.workflows.workflow_tasks(wf["id"])}
    assert tasks == {"a": TaskStatus.FAILED, "b": TaskStatus.FAILED}
    assert svc.workflows.get_workflow(wf["id"]).status is WorkflowStatus.FAILED

    # And killing it again says it has ended, and writes nothing
    again = job_actions.kill_jobs(svc, [a.id], "alice")
    assert results(again) == [(a.id, KillResult.ENDED)]
    assert store.get_job(a.id) == killed
    assert svc.outbox.pending_events(10) == []


def test_a_running_job_killed_is_killed_by_its_pilot_and_ends_cancelled_not_retried(
    store: Store, clock: FakeClock
) -> None:
    # Given alice's task of two jobs; a pilot runs one of them
    svc = services(store, clock)
    spec = TaskSpec(name="two", command=["true"], n_jobs=2, queue="q", max_attempts=3)
    task = submit(svc, spec, owner="alice")
    split.handle(svc, TaskRef(task_id=task.id))
    pilot, _ = dispatch.register(
        svc, pilot_id=None, queue="q", host="h", pid=None,
        resources=Resources(memory_mb=100_000, cores=64), version="t",
    )  # fmt: skip
    [held] = dispatch.acquire(svc, pilot.id, 1)
    running = JobReport(job_id=held.id, attempt=1, status=JobStatus.RUNNING)
    dispatch.update(svc, pilot.id, [running], {})
    assert dispatch.heartbeat(svc, pilot.id, [held.id]).commands == []

    # When an admin kills it
    clock.advance(2)
    [done] = job_actions.kill_jobs(svc, [held.id], "root", admin=True)

    # Then it runs on, flagged, and its pilot is told to kill it in its next heartbeat reply
    assert (done.result, done.status) == (KillResult.KILL_REQUESTED, JobStatus.RUNNING)
    flagged = store.get_job(held.id)
    assert flagged.status is JobStatus.RUNNING and flagged.kill_requested
    assert dispatch.heartbeat(svc, pilot.id, [held.id]).commands == [{"kill": held.id}]
    # And a second kill says it is being killed, and writes nothing
    clock.advance(1)
    [again] = job_actions.kill_jobs(svc, [held.id], "alice")
    assert again.result is KillResult.BEING_KILLED
    assert store.get_job(held.id) == flagged

    # When the pilot reports it failed, killed on the server's command
    killed = JobReport(job_id=held.id, attempt=1, status=JobStatus.FAILED, exit_code=137,
                       error_code=ErrorCode.KILLED_BY_SERVER)  # fmt: skip
    [accepted], _ = dispatch.update(svc, pilot.id, [killed], {})
    assert accepted["accepted"] is True

    # Then the job ends cancelled in that attempt (not retried), the pilot has nothing left
    # to kill, and the task's other job goes on: the task is not over
    ended = store.get_job(held.id)
    assert (ended.status, ended.attempt) == (JobStatus.CANCELLED, 1)
    assert dispatch.heartbeat(svc, pilot.id, []).commands == []
    deliver(svc)
    assert store.get_task(task.id, counts=False).status is TaskStatus.RUNNING
    [other] = [j for j in store.list_jobs(task.id) if j.id != held.id]
    assert other.status is JobStatus.ACTIVATED


class ClaimedMeanwhile:
    """The store under test, but a pilot claims the queue's jobs between the kill's read and
    its first write (`raced` times in a row: the kill loses its compare-and-set each time)."""

    def __init__(self, store: Store, clock: FakeClock, raced: int) -> None:
        self.store, self.clock, self.raced = store, clock, raced

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def apply_job_changes(self, changes: Sequence[Any]) -> list[bool]:
        if self.raced:
            self.raced -= 1
            for change in changes:  # a pilot takes the job, or reports on it, meanwhile
                job = self.store.get_job(change.before.id)
                moved = job.model_copy(update={"updated_at": self.clock.now(), "attempt":
                                               job.attempt + 1})  # fmt: skip
                assert self.store.apply_job_changes([JobChange(job, moved)]) == [True]
        return list(self.store.apply_job_changes(changes))


def test_a_job_that_changed_between_read_and_write_is_decided_again(
    store: Store, clock: FakeClock
) -> None:
    # Given alice's activated job, that moves on between the kill's read and write once
    svc = services(store, clock)
    [job] = store.list_jobs(split_task(svc, "one"))
    raced = Services(store=ClaimedMeanwhile(store, clock, 1), bus=_NoBus(), blobs=_NoBlobs(),
                     clock=clock)  # fmt: skip

    # When she kills it, Then the kill reads it again and cancels it as it is now
    [done] = job_actions.kill_jobs(raced, [job.id], "alice")
    assert done.result is KillResult.KILLED
    assert (store.get_job(job.id).status, store.get_job(job.id).attempt) == (
        JobStatus.CANCELLED, 2,
    )  # fmt: skip

    # And a job that keeps changing is refused after a few rounds, saying so
    [other] = store.list_jobs(split_task(svc, "two"))
    always = Services(store=ClaimedMeanwhile(store, clock, 100), bus=_NoBus(), blobs=_NoBlobs(),
                      clock=clock)  # fmt: skip
    with pytest.raises(Conflict, match=f"job {other.id} kept changing while being killed"):
        job_actions.kill_jobs(always, [other.id], "alice")
    assert store.get_job(other.id).status is JobStatus.ACTIVATED


def split_task(svc: Services, name: str) -> str:
    task = submit(svc, TaskSpec(name=name, command=["true"], n_jobs=1, queue="q"), owner="alice")
    split.handle(svc, TaskRef(task_id=task.id))
    return task.id
