"""A final report sent again (its first answer lost) is recognised as a replay of the end it
repeats (jobflow.replayed_end), and nothing else is."""

from __future__ import annotations

import pytest

from skypanda.domain.errors import Conflict
from skypanda.domain.jobflow import apply_report, new_job, replayed_end
from skypanda.domain.models import Job, JobReport, Task, TaskSpec
from skypanda.domain.splitter import split
from skypanda.domain.states import JobStatus


def _running_job() -> Job:
    spec = TaskSpec(name="t", command=["true"], n_jobs=1)
    task = Task(id="t1", spec=spec, created_at=1.0, updated_at=1.0)
    (one,) = split(task.spec)
    return new_job(task, one, now=1.0).model_copy(
        update={"status": JobStatus.RUNNING, "pilot_id": "p1"}
    )


def _report(job: Job, status: str, attempt: int = 1) -> JobReport:
    code = 0 if status == "finished" else 1
    return JobReport(job_id=job.id, attempt=attempt, status=status, exit_code=code)


@pytest.mark.parametrize("status", ["finished", "failed"])
def test_the_same_end_reported_again_by_its_pilot_is_a_replay(status: str) -> None:
    # Given a job whose pilot reported its end (a failure with no attempt left)
    job = _running_job().model_copy(update={"max_attempts": 1})
    ended = apply_report(job, _report(job, status), "p1", 2.0, "file:///log").after
    assert ended.status == status
    # When the pilot sends the same report again, Then it is a replay of that end
    again = replayed_end(ended, _report(job, status), "p1")
    assert again is not None
    assert (again.job_id, again.attempt, again.status) == (job.id, 1, status)
    # (which apply_report itself refuses: the pilot no longer holds the attempt)
    with pytest.raises(Conflict):
        apply_report(ended, _report(job, status), "p1", 3.0, "file:///log")


def test_another_pilot_another_attempt_another_end_or_a_live_job_is_no_replay() -> None:
    job = _running_job()
    ended = apply_report(job, _report(job, "finished"), "p1", 2.0, "file:///log").after
    assert replayed_end(ended, _report(job, "finished"), "p2") is None  # not its pilot
    assert replayed_end(ended, _report(job, "finished", attempt=2), "p1") is None
    assert replayed_end(ended, _report(job, "failed"), "p1") is None  # not the end it had
    assert replayed_end(job, _report(job, "finished"), "p1") is None  # still running
    cancelled = ended.model_copy(update={"status": JobStatus.CANCELLED})
    assert replayed_end(cancelled, _report(job, "finished"), "p1") is None
