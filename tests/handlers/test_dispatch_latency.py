"""Dispatch latency (`job.dispatched`, the `skypanda_dispatch_latency_seconds` histogram and
its log-based metric on Google Cloud): every attempt's wait from when it became ready to run
to its claim, children released by their parents' ends and retries included, whichever way
it is claimed (a pull acquire, the acquire of a report, a push pilot's own job)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from skypanda.domain.models import Job, JobReport, Resources
from skypanda.domain.states import JobStatus
from skypanda.domain.workflow import WorkflowSpec
from skypanda.handlers import dispatch, workflow
from skypanda.handlers.pipeline import Pipeline
from skypanda.handlers.services import Services
from skypanda.runtime.router import Router
from skypanda.wire import logs
from skypanda.wire.logs import LogEvent
from tests.support import FakeClock


@pytest.fixture
def waits() -> Iterator[dict[str, list[float]]]:
    """The latencies `job.dispatched` announced, by job."""
    heard: dict[str, list[float]] = {}

    def listener(event: str, labels: Mapping[str, Any], fields: Mapping[str, Any]) -> None:
        if event == LogEvent.JOB_DISPATCHED:
            heard.setdefault(labels["job"], []).append(fields["latency_s"])

    logs.listen(listener)
    yield heard
    logs.unlisten(listener)


def _submit(svc: Services, a_attempts: int = 1) -> Router:
    """a -> b job by job, submitted and split at the clock's time: a's job activated."""
    spec = WorkflowSpec.model_validate(
        {"name": "w", "tasks": [
            {"name": "a", "command": ["true"], "n_jobs": 1, "max_attempts": a_attempts},
            {"name": "b", "command": ["true"], "n_jobs": 1, "depends": [{"task": "a"}]},
        ]}
    )  # fmt: skip
    workflow.submit_workflow(svc, spec, "me")
    router = Router(Pipeline(svc), svc.store)
    router.drain()
    return router


def _pilot(svc: Services) -> str:
    pilot, _ = dispatch.register(
        svc, pilot_id=None, queue="local", host="h", pid=1, resources=Resources(), version="v"
    )
    return pilot.id


def _ended(job: Job, status: JobStatus = JobStatus.FINISHED) -> JobReport:
    code = 0 if status is JobStatus.FINISHED else 1
    return JobReport(job_id=job.id, attempt=job.attempt, status=status, exit_code=code)


def test_a_child_s_wait_is_from_its_parent_s_end(
    svc: Services, clock: FakeClock, waits: dict[str, list[float]]
) -> None:
    # Given a's job claimed 2 s after its submission
    router = _submit(svc)
    pilot = _pilot(svc)
    clock.advance(2)
    (a,) = dispatch.acquire(svc, pilot, 5)
    # When a ends 7 s later (b released in that report), and b is claimed 4 s after that
    clock.advance(7)
    dispatch.update(svc, pilot, [_ended(a)], {})
    router.drain()
    clock.advance(4)
    (b,) = dispatch.acquire(svc, pilot, 5)
    # Then a waited 2 s and b 4 s (b's wait was not measured before: it has parents)
    assert (waits[a.id], waits[b.id]) == ([2.0], [4.0])
    assert b.activated_at == clock.now() - 4


def test_a_child_claimed_in_its_parent_s_report_waited_nothing(
    svc: Services, clock: FakeClock, waits: dict[str, list[float]]
) -> None:
    # Given a's job held by a pilot
    _submit(svc)
    pilot = _pilot(svc)
    (a,) = dispatch.acquire(svc, pilot, 5)
    # When a's end is reported with an acquire (b released and claimed in the same request)
    clock.advance(3)
    _, reply = dispatch.update(svc, pilot, [_ended(a)], {}, acquire_n=1)
    # Then b is measured, with no wait
    (b,) = reply.jobs
    assert waits[b.id] == [0.0]


def test_a_retry_s_wait_is_from_its_retry(
    svc: Services, clock: FakeClock, waits: dict[str, list[float]]
) -> None:
    # Given a job of 2 attempts whose first attempt fails 5 s after its claim
    router = _submit(svc, a_attempts=2)
    pilot = _pilot(svc)
    (a,) = dispatch.acquire(svc, pilot, 5)
    clock.advance(5)
    dispatch.update(svc, pilot, [_ended(a, JobStatus.FAILED)], {})
    router.drain()
    # When its second attempt is claimed 6 s after that failure
    clock.advance(6)
    (again,) = dispatch.acquire(svc, pilot, 5)
    # Then each attempt is measured from when it became ready: 0 s, then 6 s
    assert (again.id, again.attempt) == (a.id, 2)
    assert waits[a.id] == [0.0, 6.0]


def test_a_push_pilot_s_job_is_measured_too(
    svc: Services, clock: FakeClock, waits: dict[str, list[float]]
) -> None:
    # Given a's job activated, and a pilot launched for it (push mode) that asks 9 s later
    _submit(svc)
    (a,) = svc.store.list_activated("local", 5)
    pilot = _pilot(svc)
    clock.advance(9)
    (got,) = dispatch.acquire(svc, pilot, 1, a.id)
    # Then its wait is measured from its activation
    assert got.id == a.id and waits[a.id] == [9.0]
    assert svc.store.get_job(a.id).activated_at == clock.now() - 9
