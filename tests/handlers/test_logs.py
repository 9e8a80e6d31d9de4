"""Job logs take chunks only from the pilot holding the job's current attempt, while it runs
(or just ended); a refused report adds nothing to any log (issue 13)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skypanda.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from skypanda.domain.jobflow import log_key
from skypanda.domain.models import Job, JobReport, Queue, Resources, TaskSpec
from skypanda.domain.states import JobStatus
from skypanda.handlers import dispatch
from skypanda.handlers.pipeline import Pipeline
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from skypanda.runtime.router import Router
from tests.support import FakeClock, sqlite_services


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    with sqlite_services(tmp_path, FakeClock(), Queue(name="local")) as services:
        yield services


def _pilot(svc: Services) -> str:
    return dispatch.register(svc, pilot_id=None, queue="local", host="h", pid=None,
                             resources=Resources(), version="v")[0].id  # fmt: skip


def _held(svc: Services) -> tuple[str, Job]:
    submit(svc, TaskSpec(name="t", command=["true"], n_jobs=1), owner="me")
    Router(Pipeline(svc), svc.store).drain()
    pilot = _pilot(svc)
    [job] = dispatch.acquire(svc, pilot, 1)
    return pilot, job


def _log(svc: Services, job: Job, attempt: int = 1) -> bytes:
    try:
        return svc.blobs.read(log_key(job.id, attempt))
    except NotFound:
        return b""


def test_the_holding_pilot_appends_to_the_current_attempt(svc: Services) -> None:
    pilot, job = _held(svc)
    dispatch.append_log(svc, job.id, 1, b"hello\n", pilot)
    assert _log(svc, job) == b"hello\n"


def test_another_pilot_an_old_attempt_and_a_big_chunk_are_refused(svc: Services) -> None:
    pilot, job = _held(svc)
    other = _pilot(svc)
    with pytest.raises(Forbidden, match=f"pilot {other} does not hold job {job.id}"):
        dispatch.append_log(svc, job.id, 1, b"x", other)
    with pytest.raises(Conflict, match="is at attempt 1, not 2"):
        dispatch.append_log(svc, job.id, 2, b"x", pilot)
    with pytest.raises(InvalidInput, match="a log chunk is limited to"):
        dispatch.append_log(svc, job.id, 1, b"x" * (dispatch.LOG_CHUNK_BYTES + 1), pilot)
    assert _log(svc, job) == b""


def test_a_chunk_just_after_the_end_is_kept_and_a_late_one_refused(svc: Services) -> None:
    pilot, job = _held(svc)
    end = JobReport(job_id=job.id, attempt=1, status=JobStatus.FINISHED, exit_code=0)
    dispatch.update(svc, pilot, [end], {})
    dispatch.append_log(svc, job.id, 1, b"last words\n", pilot)
    clock = svc.clock
    assert isinstance(clock, FakeClock)
    clock.advance(dispatch.LOG_GRACE_S + 1)
    with pytest.raises(Conflict, match="is finished: its log is closed"):
        dispatch.append_log(svc, job.id, 1, b"too late\n", pilot)
    assert _log(svc, job) == b"last words\n"


def test_a_refused_report_adds_nothing_to_the_log(svc: Services) -> None:
    _, job = _held(svc)
    stranger = _pilot(svc)
    end = JobReport(job_id=job.id, attempt=1, status=JobStatus.FINISHED, exit_code=0)
    results, _ = dispatch.update(svc, stranger, [end], {job.id: "forged output\n"})
    assert results[0]["accepted"] is False
    assert _log(svc, job) == b""
