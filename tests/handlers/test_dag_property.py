"""Property: for any DAG and any completion order, with duplicated and reordered job.ended
events, every job is activated exactly once and only after all its parents finished; with
failures, exactly the descendants of failed jobs are cancelled (unless the workflow continues).

Real handlers and the embedded store; simulated pilots take random batches in random order."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skypanda.domain.events import JobEnded
from skypanda.domain.ids import job_id
from skypanda.domain.models import Job, Queue
from skypanda.domain.states import JOB_FINAL, WORKFLOW_FINAL, JobStatus, WorkflowStatus
from skypanda.domain.workflow import WorkflowSpec
from skypanda.handlers import release, workflow
from skypanda.handlers.pipeline import Pipeline
from skypanda.handlers.services import Services
from skypanda.runtime.router import Router
from skypanda.runtime.sim import SimulatedPilots
from tests.support import FakeClock, sqlite_services

TASKS = ("t0", "t1", "t2")


@st.composite
def dags(draw: st.DrawFn) -> list[list[int]]:
    """parents[j] for j in 0..n-1: a subset of the earlier jobs (so acyclic by construction)."""
    n = draw(st.integers(1, 24))
    return [
        sorted(draw(st.sets(st.integers(0, j - 1), max_size=min(j, 4)))) if j else []
        for j in range(n)
    ]


def _descendants(parents: list[list[int]], roots: set[int]) -> set[int]:
    out: set[int] = set()
    for j, ps in enumerate(parents):  # parents come first, so one pass suffices
        if any(p in roots or p in out for p in ps):
            out.add(j)
    return out


def _drive(
    svc: Services, parents: list[list[int]], failing: set[int], goes_on: bool, seed: int
) -> tuple[dict[int, Job], list[int]]:
    rng = random.Random(seed)
    task_of = [rng.choice(TASKS) for _ in parents]
    spec = WorkflowSpec.model_validate(
        {
            "name": "p",
            "graph": "g.jsonl",
            "continue_on_failure": goes_on,
            "tasks": [
                {"name": t, "command": ["true"], "graph": True, "max_attempts": 1}
                for t in sorted(set(task_of))
            ],
        }
    )
    lines = [
        json.dumps({"id": f"j{j}", "task": task_of[j], "parents": [f"j{p}" for p in ps]}).encode()
        for j, ps in enumerate(parents)
    ]
    wf = workflow.submit_workflow(svc, spec, "me", iter(lines))
    router = Router(Pipeline(svc), svc.store, batch=rng.randint(1, 50))
    ids: dict[str, int] = {}  # job id -> graph index, filled once the jobs exist
    ran: list[int] = []
    ended: list[JobEnded] = []

    def outcome(job: Job) -> tuple[JobStatus, dict[str, str]]:
        j = ids[job.id]
        # the job runs only after every parent finished (or ended, when the workflow goes on)
        stored = svc.store.get_jobs(job.parents)
        ok = JOB_FINAL if goes_on else {JobStatus.FINISHED}
        assert all(stored[p].status in ok for p in job.parents), j
        ran.append(j)
        ended.append(JobEnded(job_id=job.id, task_id=job.task_id, attempt=1, status="x"))
        return (JobStatus.FAILED if j in failing else JobStatus.FINISHED), {}

    router.drain()  # start: make the jobs
    by_task = {t.spec.name: t.id for t in svc.store.workflow_tasks(wf.id)}
    counters = dict.fromkeys(TASKS, 0)
    for j, t in enumerate(task_of):
        ids[job_id(by_task[t], counters[t])] = j
        counters[t] += 1
    sim = SimulatedPilots(
        svc, router, "local", pilots=2, batch=rng.randint(1, 6), outcome=outcome, shuffle=rng
    )
    for _ in range(10 * len(parents) + 10):
        sim.round()
        # duplicated and reordered deliveries of events already delivered
        if ended:
            release.release(svc, rng.sample(ended, k=min(len(ended), rng.randint(0, 5))))
        if svc.store.get_workflow(wf.id).status in WORKFLOW_FINAL:
            break
    assert svc.store.get_workflow(wf.id).status in WORKFLOW_FINAL
    jobs = {ids[j.id]: j for t in by_task.values() for j in svc.store.list_jobs(t)}
    return jobs, ran


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parents=dags(), seed=st.integers(0, 2**32))
def test_every_job_runs_exactly_once_after_its_parents(parents: list[list[int]], seed: int) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        sqlite_services(Path(tmp), FakeClock(), Queue(name="local")) as svc,
    ):
        jobs, ran = _drive(svc, parents, set(), False, seed)
    # Then every job ran exactly once, on its first attempt, and finished
    assert sorted(ran) == list(range(len(parents)))
    assert all(j.status is JobStatus.FINISHED and j.attempt == 1 for j in jobs.values())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parents=dags(), data=st.data(), seed=st.integers(0, 2**32), goes_on=st.booleans())
def test_failures_cancel_exactly_the_descendants(
    parents: list[list[int]], data: st.DataObject, seed: int, goes_on: bool
) -> None:
    failing = data.draw(st.sets(st.integers(0, len(parents) - 1), max_size=3), label="failing")
    with (
        tempfile.TemporaryDirectory() as tmp,
        sqlite_services(Path(tmp), FakeClock(), Queue(name="local")) as svc,
    ):
        jobs, ran = _drive(svc, parents, failing, goes_on, seed)
        (wf,) = svc.store.list_workflows()
        final = wf.status
    below = set() if goes_on else _descendants(parents, failing)
    # Then exactly the descendants of failed jobs never ran and ended cancelled
    assert sorted(ran) == sorted(set(range(len(parents))) - below)
    for j, job in jobs.items():
        expected = (
            JobStatus.CANCELLED
            if j in below  # a failing job below another failure never runs
            else JobStatus.FAILED
            if j in failing
            else JobStatus.FINISHED
        )
        assert job.status is expected, (j, job.status, job.error_diag)
        if j in below:
            assert job.error_diag.startswith("missing parent: ")
    # And the workflow failed if anything failed
    assert final is (WorkflowStatus.FAILED if failing else WorkflowStatus.DONE)
