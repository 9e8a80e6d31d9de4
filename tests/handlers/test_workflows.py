"""Workflows through the real handlers on the embedded store, with simulated pilots (no
subprocess): release, failure propagation, continue-past-failure, conditions, loops, retry."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from skypanda.domain.errors import Conflict, InvalidInput
from skypanda.domain.models import Job, Queue, TaskSpec
from skypanda.domain.planner import latest_iterations
from skypanda.domain.states import WORKFLOW_FINAL, JobStatus, TaskStatus, WorkflowStatus
from skypanda.domain.workflow import WorkflowSpec
from skypanda.handlers import task_actions, workflow, workflow_actions
from skypanda.handlers.pipeline import Pipeline
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from skypanda.runtime.router import Router
from skypanda.runtime.sim import SimulatedPilots
from tests.support import FakeClock, sqlite_services


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    with sqlite_services(tmp_path, FakeClock(), Queue(name="local")) as services:
        yield services


def _spec(tasks: list[dict[str, Any]], **extra: Any) -> WorkflowSpec:
    for t in tasks:
        t.setdefault("command", ["true"])
        t.setdefault("max_attempts", 1)
    return WorkflowSpec.model_validate({"name": "w", "tasks": tasks, **extra})


class Run:
    """A submitted workflow driven to its end by simulated pilots."""

    def __init__(
        self,
        svc: Services,
        spec: WorkflowSpec,
        fail: Callable[[str, int], bool] = lambda name, index: False,
        flags: Callable[[str, int, int], dict[str, str]] = lambda name, index, it: {},
    ) -> None:
        self.svc = svc
        self.wf = workflow.submit_workflow(svc, spec, "me")
        self.router = Router(Pipeline(svc), svc.store)
        self.fail = fail
        self.flags = flags
        self.runs: list[tuple[str, int, int]] = []  # (task, iteration, index) of each job run

    def _outcome(self, job: Job) -> tuple[JobStatus, dict[str, str]]:
        task = self.svc.store.get_task(job.task_id, counts=False)
        name = task.spec.name
        self.runs.append((name, task.iteration, job.index))
        if self.fail(name, job.index):
            return JobStatus.FAILED, {}
        return JobStatus.FINISHED, self.flags(name, job.index, task.iteration)

    def go(self) -> WorkflowStatus:
        sim = SimulatedPilots(self.svc, self.router, "local", batch=7, outcome=self._outcome)
        sim.run(lambda: self.status() in WORKFLOW_FINAL)
        return self.status()

    def status(self) -> WorkflowStatus:
        return self.svc.store.get_workflow(self.wf.id).status

    def tasks(self) -> dict[str, TaskStatus]:
        records = self.svc.store.workflow_tasks(self.wf.id)
        latest = latest_iterations(records, lambda t: t.spec.name, lambda t: t.iteration)
        return {n: t.status for n, t in latest.items()}

    def jobs(self, name: str) -> list[Job]:
        out: list[Job] = []
        for t in self.svc.store.workflow_tasks(self.wf.id):
            if t.spec.name == name:
                out += self.svc.store.list_jobs(t.id)
        return out


def test_a_failed_job_cancels_its_descendants_with_the_reason_and_the_workflow_fails(
    svc: Services,
) -> None:
    # Given a -> b (job by job) -> c (job by job), and d after c (task level); job 1 of a fails
    spec = _spec(
        [
            {"name": "a", "n_jobs": 3},
            {"name": "b", "n_jobs": 3, "depends": [{"task": "a"}]},
            {"name": "c", "n_jobs": 3, "depends": [{"task": "b"}]},
            {"name": "d", "n_jobs": 1, "after": ["c"]},
        ]
    )
    run = Run(svc, spec, fail=lambda name, i: name == "a" and i == 1)

    # When it runs
    assert run.go() is WorkflowStatus.FAILED

    # Then job 1's descendants never ran and ended cancelled, naming the missing parent
    assert ("b", 1, 1) not in run.runs and ("c", 1, 1) not in run.runs
    b1 = next(j for j in run.jobs("b") if j.index == 1)
    c1 = next(j for j in run.jobs("c") if j.index == 1)
    assert b1.status is JobStatus.CANCELLED and c1.status is JobStatus.CANCELLED
    a1 = next(j for j in run.jobs("a") if j.index == 1)
    assert b1.error_diag == f"missing parent: {a1.id} did not finish"
    assert c1.error_diag == f"missing parent: {b1.id} did not finish"
    # And the other chains ran to the end
    assert {("c", 1, 0), ("c", 1, 2)} <= set(run.runs)
    # And the task after c was cancelled without running, with its reason
    assert run.tasks() == {
        "a": TaskStatus.FAILED,
        "b": TaskStatus.FAILED,
        "c": TaskStatus.FAILED,
        "d": TaskStatus.CANCELLED,
    }
    d = next(t for t in svc.store.workflow_tasks(run.wf.id) if t.spec.name == "d")
    assert d.reason == "missing parent: task c failed" and d.n_jobs == 1
    assert svc.store.list_jobs(d.id) == []


def test_continue_on_failure_runs_descendants_of_failed_jobs(svc: Services) -> None:
    # Given the same chain, but the workflow continues past failures
    spec = _spec(
        [
            {"name": "a", "n_jobs": 2},
            {"name": "b", "n_jobs": 2, "depends": [{"task": "a"}]},
            {"name": "c", "n_jobs": 1, "after": ["b"]},
        ],
        continue_on_failure=True,
    )
    run = Run(svc, spec, fail=lambda name, i: name == "a" and i == 0)

    # When it runs, Then every job downstream of the failure still ran
    assert run.go() is WorkflowStatus.FAILED  # a failure is still a failure
    assert {("b", 1, 0), ("b", 1, 1), ("c", 1, 0)} <= set(run.runs)
    assert run.tasks() == {"a": TaskStatus.FAILED, "b": TaskStatus.DONE, "c": TaskStatus.DONE}


def test_only_ends_of_jobs_that_may_have_children_look_for_them(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a -> b (job by job), c after b (task level), and a plain task beside them; the
    # store's search for a parent's edges watched
    looked: list[str] = []
    search = svc.store.release_children

    def watched(parent_ids: Sequence[str]) -> Any:
        looked.extend(parent_ids)
        return search(parent_ids)

    monkeypatch.setattr(svc.store, "release_children", watched)
    spec = _spec(
        [
            {"name": "a", "n_jobs": 2},
            {"name": "b", "n_jobs": 2, "depends": [{"task": "a"}]},
            {"name": "c", "n_jobs": 1, "after": ["b"]},
        ]
    )
    run = Run(svc, spec)
    plain = submit(svc, TaskSpec(name="plain", command=["true"], n_jobs=3), owner="me")

    # When it all runs
    assert run.go() is WorkflowStatus.DONE
    SimulatedPilots(svc, run.router, "local").run(
        lambda: svc.store.get_task(plain.id).status is TaskStatus.DONE
    )

    # Then only the ends of a's jobs (b's parents) looked for children: b's and c's jobs have
    # none (c waits for b as a task), nor has a plain task's. Each of a's jobs is looked up at
    # most twice: in its report's commit (issue 17), then again, read-only, when the router
    # delivers its job.ended event (the path that recovers a release the report did not make)
    assert set(looked) == {j.id for j in run.jobs("a")}
    assert all(looked.count(j) <= 2 for j in set(looked))


def test_a_task_level_dependency_makes_the_task_only_after_its_prerequisite_ended(
    svc: Services,
) -> None:
    # Given b after a
    run = Run(svc, _spec([{"name": "a", "n_jobs": 3}, {"name": "b", "n_jobs": 2, "after": ["a"]}]))
    b = next(t for t in svc.store.workflow_tasks(run.wf.id) if t.spec.name == "b")

    # Then b has no jobs until a has ended, and every job of b runs after every job of a
    workflow.start(svc, run.wf.id)
    assert svc.store.list_jobs(b.id) == []
    assert run.go() is WorkflowStatus.DONE
    names = [name for name, _, _ in run.runs]
    assert names == ["a", "a", "a", "b", "b"]


@pytest.mark.parametrize(
    ("condition", "a_fails", "b_runs"),
    [
        ({"task": "a", "status": "succeeded"}, False, True),
        ({"task": "a", "status": "succeeded"}, True, False),
        ({"task": "a", "status": "failed"}, True, True),
        ({"task": "a", "status": "failed"}, False, False),
        ({"task": "a", "status": "ended"}, True, True),
        ({"task": "a", "flag": "good"}, False, True),
        ({"task": "a", "flag": "good", "equals": "no"}, False, False),
        ({"task": "a", "flag": "absent"}, False, False),
    ],
)
def test_conditions_decide_whether_a_task_runs(
    svc: Services, condition: dict[str, str], a_fails: bool, b_runs: bool
) -> None:
    # Given b runs only when its condition on a holds; a's job 1 sets the flag good=yes
    spec = _spec([{"name": "a", "n_jobs": 2}, {"name": "b", "n_jobs": 1, "when": condition}])
    run = Run(
        svc,
        spec,
        fail=lambda name, i: a_fails and name == "a" and i == 0,
        flags=lambda name, i, it: {"good": "yes"} if name == "a" and i == 1 else {},
    )

    # When it runs
    run.go()

    # Then b ran or was skipped, with the condition as its reason
    assert (("b", 1, 0) in run.runs) is b_runs
    b = next(t for t in svc.store.workflow_tasks(run.wf.id) if t.spec.name == "b")
    if b_runs:
        assert b.status is TaskStatus.DONE
    else:
        assert b.status is TaskStatus.SKIPPED and b.reason.startswith("condition not met: a")


def _loop_spec(max_iterations: int) -> WorkflowSpec:
    return _spec(
        [
            {"name": "fit", "n_jobs": 2, "command": ["fit", "{iteration}"]},
            {"name": "check", "n_jobs": 1, "after": ["fit"]},
            {"name": "report", "n_jobs": 1, "after": ["check"]},
        ],
        loops=[
            {
                "name": "refine",
                "tasks": ["fit", "check"],
                "until": {"task": "check", "flag": "converged"},
                "max_iterations": max_iterations,
            }
        ],
    )


def test_a_loop_repeats_until_its_condition_holds_then_the_workflow_goes_on(
    svc: Services,
) -> None:
    # Given fit -> check repeated until check says converged (it does at iteration 3)
    run = Run(
        svc,
        _loop_spec(5),
        flags=lambda name, i, it: {"converged": "yes"} if name == "check" and it == 3 else {},
    )

    # When it runs
    assert run.go() is WorkflowStatus.DONE

    # Then fit and check ran three times each, in order, and report once after the loop
    assert [r for r in run.runs if r[0] == "check"] == [("check", 1, 0), ("check", 2, 0),
                                                         ("check", 3, 0)]  # fmt: skip
    assert run.runs[-1] == ("report", 1, 0)
    # And each iteration's command saw its iteration number
    fits = run.jobs("fit")
    assert sorted({j.command[1] for j in fits}) == ["1", "2", "3"]
    assert "refine: check flag converged at iteration 3" in svc.store.get_workflow(run.wf.id).reason


def test_a_loop_stops_at_max_iterations(svc: Services) -> None:
    # Given a loop whose condition never holds, bounded to 4 iterations
    run = Run(svc, _loop_spec(4))

    # When it runs, Then it stopped after 4 iterations and the workflow went on and ended
    assert run.go() is WorkflowStatus.DONE
    assert len([r for r in run.runs if r[0] == "check"]) == 4
    assert "stopped after 4 iterations" in svc.store.get_workflow(run.wf.id).reason
    assert ("report", 1, 0) in run.runs


def test_retry_reruns_only_failed_and_cancelled_jobs_and_keeps_finished_ones(
    svc: Services,
) -> None:
    # Given a -> b (job by job) -> c (task level); job 2 of a fails the first time only
    spec = _spec(
        [
            {"name": "a", "n_jobs": 3},
            {"name": "b", "n_jobs": 3, "depends": [{"task": "a"}]},
            {"name": "c", "n_jobs": 1, "after": ["b"]},
        ]
    )
    failing = {"on": True}
    run = Run(svc, spec, fail=lambda name, i: failing["on"] and name == "a" and i == 2)
    assert run.go() is WorkflowStatus.FAILED
    finished_before = {
        j.id: j for j in run.jobs("a") + run.jobs("b") if j.status is JobStatus.FINISHED
    }
    assert len(finished_before) == 4
    runs_before = len(run.runs)

    # When the user retries the workflow (and the job now succeeds)
    failing["on"] = False
    assert workflow_actions.retry(svc, run.wf.id) == 2  # a[2] failed, b[2] cancelled
    assert run.status() is WorkflowStatus.RUNNING
    assert run.go() is WorkflowStatus.DONE

    # Then only a[2], then b[2], then c ran again; finished jobs kept their attempt
    assert run.runs[runs_before:] == [("a", 1, 2), ("b", 1, 2), ("c", 1, 0)]
    for job in run.jobs("a") + run.jobs("b"):
        if job.id in finished_before:
            assert job.attempt == 1 and job.ended_at == finished_before[job.id].ended_at
        else:
            assert job.attempt == 2 and job.status is JobStatus.FINISHED


def test_retry_of_a_workflow_that_did_not_fail_is_refused(svc: Services) -> None:
    run = Run(svc, _spec([{"name": "a", "n_jobs": 1}]))
    run.go()
    with pytest.raises(Conflict, match=r"cannot retry workflow .*: it has ended done"):
        workflow_actions.retry(svc, run.wf.id)


def test_killing_a_workflow_aborts_its_tasks(svc: Services) -> None:
    # Given a started workflow with a waiting task
    run = Run(svc, _spec([{"name": "a", "n_jobs": 2}, {"name": "b", "n_jobs": 1, "after": ["a"]}]))
    workflow.start(svc, run.wf.id)

    # When it is killed
    wf = workflow_actions.kill(svc, run.wf.id, "stop")

    # Then the workflow and every task are aborted, and nothing is left to run
    assert wf.status is WorkflowStatus.ABORTED
    assert set(run.tasks().values()) == {TaskStatus.ABORTED}
    assert svc.store.count_activated("local") == 0


def test_a_mapping_that_leaves_a_job_without_parents_stores_nothing(svc: Services) -> None:
    # Given b by key visit, where one job of b names a visit no job of a has
    spec = _spec(
        [
            {"name": "a", "inputs": ["v1", "v2"], "keys": {"visit": r"v(\d+)"}},
            {
                "name": "b",
                "inputs": ["v1", "v3"],
                "keys": {"visit": r"v(\d+)"},
                "depends": [{"task": "a", "by": "visit"}],
            },
        ]
    )
    # When it is submitted, Then the error names the job and the value, and nothing is stored
    with pytest.raises(InvalidInput, match=r"task 'b' job 1: visit='3' matches no job of 'a'"):
        workflow.submit_workflow(svc, spec, "me")
    assert svc.store.list_workflows() == [] and svc.store.list_tasks() == []


def test_an_unknown_queue_stores_nothing(svc: Services) -> None:
    spec = _spec([{"name": "a", "n_jobs": 1, "queue": "nowhere"}])
    with pytest.raises(InvalidInput, match="task a: unknown queue 'nowhere'"):
        workflow.submit_workflow(svc, spec, "me")
    assert svc.store.list_workflows() == []


def test_a_paused_task_keeps_its_released_children_waiting_until_resumed(svc: Services) -> None:

    # Given a -> b job by job, started, and b paused by its owner
    spec = _spec(
        [{"name": "a", "n_jobs": 3}, {"name": "b", "n_jobs": 3, "depends": [{"task": "a"}]}]
    )
    run = Run(svc, spec)
    workflow.start(svc, run.wf.id)
    b = next(t for t in svc.store.workflow_tasks(run.wf.id) if t.spec.name == "b")
    assert task_actions.pause(svc, b.id, "me").status is TaskStatus.PAUSED

    # When all of a's jobs finish, Then b's jobs are not released while b is paused
    with pytest.raises(RuntimeError, match="stuck"):
        run.go()
    assert [j.status for j in run.jobs("b")] == [JobStatus.DEFINED] * 3
    assert run.status() is WorkflowStatus.RUNNING

    # When b is resumed, Then its jobs run and the workflow ends done
    task_actions.resume(svc, b.id, "me")
    assert run.go() is WorkflowStatus.DONE


def test_a_task_whose_jobs_all_ended_while_paused_advances_its_workflow_when_resumed(
    svc: Services,
) -> None:
    from skypanda.domain.models import JobReport, Resources
    from skypanda.handlers import dispatch

    # Given a then b, and a's two jobs running on a pilot
    spec = _spec([{"name": "a", "n_jobs": 2}, {"name": "b", "n_jobs": 1, "after": ["a"]}])
    run = Run(svc, spec)
    run.router.drain()
    pilot = dispatch.register(svc, pilot_id=None, queue="local", host="h", pid=None,
                              resources=Resources(), version="v")[0].id  # fmt: skip
    held = dispatch.acquire(svc, pilot, 10)
    assert len(held) == 2
    a = next(t for t in svc.store.workflow_tasks(run.wf.id) if t.spec.name == "a")

    # When a is paused, and both its jobs end while it is paused
    task_actions.pause(svc, a.id, "me")
    run.router.drain()
    reports = [
        JobReport(job_id=j.id, attempt=j.attempt, status=JobStatus.FINISHED, exit_code=0)
        for j in held
    ]
    dispatch.update(svc, pilot, reports, {})
    run.router.drain()
    assert run.tasks() == {"a": TaskStatus.PAUSED, "b": TaskStatus.REGISTERED}

    # Then resuming a ends it, and the workflow goes on to b and to its end
    task_actions.resume(svc, a.id, "me")
    run.router.drain()
    assert run.tasks()["a"] is TaskStatus.DONE
    assert run.go() is WorkflowStatus.DONE
    assert run.tasks() == {"a": TaskStatus.DONE, "b": TaskStatus.DONE}
