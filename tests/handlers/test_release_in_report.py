"""Children released in their parent's report (issue 17): the router's later delivery of the
parent's job.ended does not look them up again, unless that release did not happen."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from skypanda.domain.errors import BackendUnavailable
from skypanda.domain.events import EventType
from skypanda.domain.models import Job, JobReport, Queue, Resources, TaskSpec
from skypanda.domain.states import JobStatus, WorkflowStatus
from skypanda.domain.workflow import WorkflowSpec
from skypanda.handlers import dispatch, release, submit, workflow
from skypanda.handlers.pipeline import Pipeline
from skypanda.handlers.services import Services
from skypanda.runtime.router import Router
from skypanda.wire.codes import ErrorCode
from tests.support import FakeClock, sqlite_services


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    with sqlite_services(tmp_path, FakeClock(), Queue(name="local")) as services:
        yield services


def _a_then_b(svc: Services) -> tuple[Router, str, Job]:
    """a -> b job by job, submitted and split; a pilot holding a's job."""
    spec = WorkflowSpec.model_validate(
        {"name": "w", "tasks": [
            {"name": "a", "command": ["true"], "n_jobs": 1, "max_attempts": 1},
            {"name": "b", "command": ["true"], "n_jobs": 1, "max_attempts": 1,
             "depends": [{"task": "a"}]},
        ]}
    )  # fmt: skip
    wf = workflow.submit_workflow(svc, spec, "me")
    router = Router(Pipeline(svc), svc.store)
    router.drain()  # the workflow starts: a's job activated, b's defined
    pilot, _ = dispatch.register(
        svc, pilot_id=None, queue="local", host="h", pid=1, resources=Resources(), version="v"
    )
    (a,) = dispatch.acquire(svc, pilot.id, 5)
    assert svc.store.get_workflow(wf.id).status is WorkflowStatus.RUNNING
    return router, pilot.id, a


def _watch_lookups(svc: Services, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    looked: list[str] = []
    search = svc.store.release_children

    def watched(parent_ids: Sequence[str]) -> Any:
        looked.extend(parent_ids)
        return search(parent_ids)

    monkeypatch.setattr(svc.store, "release_children", watched)
    return looked


def _finished(job: Job) -> JobReport:
    return JobReport(job_id=job.id, attempt=job.attempt, status=JobStatus.FINISHED, exit_code=0)


def test_the_router_does_not_look_again_for_children_the_report_released(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a's end reported with an acquire: b is released in the report and comes back
    router, pilot, a = _a_then_b(svc)
    _, reply = dispatch.update(svc, pilot, [_finished(a)], {}, acquire_n=1)
    assert [j.status for j in reply.jobs] == [JobStatus.SENT]
    # When the router delivers a's job.ended
    looked = _watch_lookups(svc, monkeypatch)
    router.drain()
    # Then a's children are not looked up again, and the rest of the delivery happened
    assert looked == []
    assert svc.store.get_job(a.id).status is JobStatus.FINISHED


def test_children_the_report_did_not_release_are_released_by_the_router(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a's end reported while the release in the report fails
    router, pilot, a = _a_then_b(svc)

    def failing(svc: Services, ended: Any, **how: Any) -> Any:
        raise BackendUnavailable("injected")

    real = release.release_children_of
    monkeypatch.setattr(release, "release_children_of", failing)
    _, reply = dispatch.update(svc, pilot, [_finished(a)], {}, acquire_n=1)
    assert reply.jobs == []
    monkeypatch.setattr(release, "release_children_of", real)
    # When the router delivers a's job.ended
    looked = _watch_lookups(svc, monkeypatch)
    router.drain()
    # Then it looks a's children up and releases b
    assert looked == [a.id]
    (b,) = dispatch.acquire(svc, pilot, 5)
    assert b.parents == [a.id]


def _nudges(svc: Services) -> list[dict[str, Any]]:
    pending = svc.store.pending_events(500)
    return [s.event.data for s in pending if s.event.type is EventType.JOBS_ACTIVATED]


@pytest.mark.parametrize("acquire", [1, 0])
def test_the_scaler_hears_only_of_released_children_the_pilot_did_not_take(
    svc: Services, acquire: int
) -> None:
    # Given a's end reported, with or without an acquire
    _, pilot, a = _a_then_b(svc)
    assert _nudges(svc) == []
    _, reply = dispatch.update(svc, pilot, [_finished(a)], {}, acquire_n=acquire)
    # Then a child taken in the reply is not announced; one left waiting is, once
    assert len(reply.jobs) == acquire
    expected = [] if acquire else [{"queue": "local", "count": 1}]
    assert [{k: n[k] for k in ("queue", "count")} for n in _nudges(svc)] == expected


@pytest.mark.parametrize(
    ("error_code", "exit_code"), [(ErrorCode.GIVEN_BACK, None), (ErrorCode.PAYLOAD_FAILED, 1)]
)
def test_the_scaler_hears_at_once_of_a_job_a_report_put_back(
    svc: Services, error_code: ErrorCode, exit_code: int | None
) -> None:
    # Given a job of a task that allows retries, held by the queue's only pilot
    task = submit.submit(
        svc,
        TaskSpec.model_validate({"name": "t", "command": ["true"], "n_jobs": 1, "max_attempts": 3}),
        "me",
    )
    Router(Pipeline(svc), svc.store).drain()  # split: the job activated, its nudge handled
    pilot, _ = dispatch.register(
        svc, pilot_id=None, queue="local", host="h", pid=1, resources=Resources(), version="v"
    )
    (job,) = dispatch.acquire(svc, pilot.id, 5)
    assert _nudges(svc) == []
    # When its pilot gives it back unstarted (busy with a long payload), or it fails with
    # attempts left, in a report that asks for no job
    failed = JobReport(job_id=job.id, attempt=job.attempt, status=JobStatus.FAILED,
                       exit_code=exit_code, error_code=int(error_code))  # fmt: skip
    dispatch.update(svc, pilot.id, [failed], {}, acquire_n=0)
    # Then it waits again, and the scaler is told now, not at its next tick
    assert svc.store.get_job(job.id).status is JobStatus.ACTIVATED
    nudges = [{k: n[k] for k in ("queue", "count")} for n in _nudges(svc)]
    assert nudges == [{"queue": "local", "count": 1}], task.id
