"""A workflow's split at scale: jobs made by copying the task's first job are the jobs
`new_job` makes; each key is indexed once per submission; an eager task's roots are
activated as they are stored, a graph task's only once every graph task exists."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skypanda.domain import dag
from skypanda.domain.ids import job_id
from skypanda.domain.jobflow import new_job
from skypanda.domain.models import Queue, Task
from skypanda.domain.splitter import split
from skypanda.domain.states import JobStatus
from skypanda.domain.workflow import WorkflowSpec
from skypanda.handlers import workflow
from skypanda.handlers.pipeline import Pipeline
from skypanda.handlers.services import Services
from skypanda.runtime.router import Router
from tests.support import FakeClock, sqlite_services


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    with sqlite_services(tmp_path, FakeClock(), Queue(name="local")) as services:
        yield services


def _rubin_like() -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "w",
            "tasks": [
                {
                    "name": "isr",
                    "command": ["isr", "{input}", "{index}"],
                    "inputs": [f"v{v}d{d}" for v in range(3) for d in range(4)],
                    "keys": {"visit": r"v(\d+)"},
                    "env": {"A": "1"},
                    "outputs": ["*.fits"],
                },
                {
                    "name": "calibrate",
                    "command": ["cal", "{inputs}"],
                    "inputs": ["v0", "v1", "v2"],
                    "keys": {"visit": r"v(\d+)"},
                    "depends": [{"task": "isr", "by": "visit"}],
                },
            ],
        }
    )


@pytest.mark.parametrize("stage_in", [False, True])
def test_jobs_copied_from_the_first_are_the_jobs_new_job_makes(stage_in: bool) -> None:
    # Given a task's specs, some with parents
    base = _rubin_like().tasks[0].task_spec()
    inputs = [f"https://h/v{i}.fits" for i in range(6)] if stage_in else base.inputs[:6]
    spec = base.model_copy(update={"stage_in": stage_in, "inputs": inputs})
    task = Task(id="t1", spec=spec, owner="me", n_jobs=6, created_at=1.0, updated_at=1.0)
    parents = [[] if i % 2 else [f"p{i}", "q"] for i in range(6)]
    specs = list(split(spec, parents=parents))
    # When the split makes them
    make = workflow._maker(task, 5.0)
    made = [make(s) for s in specs]
    # Then each is what new_job makes of its spec
    assert made == [new_job(task, s, 5.0) for s in specs]
    assert [j.model_fields_set for j in made] == [
        new_job(task, s, 5.0).model_fields_set | ({"status"} if i else set())
        for i, s in enumerate(specs)
    ]  # (as model_copy(update=...) made them: the fields it set, set)
    assert [j.status for j in made] == [JobStatus.DEFINED, JobStatus.ACTIVATED] * 3


def test_each_key_is_indexed_once_from_submission_to_start(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a workflow whose calibrate jobs find their isr parents by visit
    calls: list[str] = []
    real = dag.key_index

    def counted(task: object, key: str) -> dict[str, list[int]]:
        calls.append(key)
        return real(task, key)  # type: ignore[arg-type]

    monkeypatch.setattr(dag, "key_index", counted)
    # When it is submitted and started in this process
    wf = workflow.submit_workflow(svc, _rubin_like(), "me")
    Router(Pipeline(svc), svc.store).drain()
    # Then isr was indexed by visit once, and every calibrate job waits for its visit's 4
    assert calls == ["visit"]
    tasks = {t.spec.name: t for t in svc.store.workflow_tasks(wf.id)}
    isr, cal = tasks["isr"].id, tasks["calibrate"].id
    jobs = svc.store.get_jobs([job_id(cal, i) for i in range(3)])
    for i in range(3):
        assert sorted(jobs[job_id(cal, i)].parents) == sorted(
            job_id(isr, 4 * i + d) for d in range(4)
        )
    assert svc.store.job_counts(isr) == {JobStatus.ACTIVATED: 12}
    assert svc.store.job_counts(cal) == {JobStatus.DEFINED: 3}


def test_a_graph_tasks_roots_wait_until_every_graph_task_exists(svc: Services) -> None:
    # Given two graph tasks whose jobs wait for each other's both ways
    spec = WorkflowSpec.model_validate(
        {
            "name": "g",
            "graph": "g.jsonl",
            "tasks": [
                {"name": "a", "command": ["true"], "graph": True},
                {"name": "b", "command": ["true"], "graph": True},
            ],
        }
    )
    lines = [
        b'{"id": "a0", "task": "a"}\n',
        b'{"id": "b0", "task": "b", "parents": ["a0"]}\n',
        b'{"id": "a1", "task": "a", "parents": ["b0"]}\n',
    ]
    wf = workflow.submit_workflow(svc, spec, "me", iter(lines))
    # When it starts
    Router(Pipeline(svc), svc.store).drain()
    # Then only the root ran free, released once both tasks existed; the others wait
    tasks = {t.spec.name: t for t in svc.store.workflow_tasks(wf.id)}
    assert svc.store.job_counts(tasks["a"].id) == {JobStatus.ACTIVATED: 1, JobStatus.DEFINED: 1}
    assert svc.store.job_counts(tasks["b"].id) == {JobStatus.DEFINED: 1}
