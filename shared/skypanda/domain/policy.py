"""Pure decisions: what happens to a job whose attempt ended badly, and how a task rolls up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from skypanda.domain.states import JOB_FINAL, JobStatus, TaskStatus
from skypanda.wire.codes import NOT_COUNTED, ErrorCode


@dataclass(frozen=True)
class AttemptOutcome:
    """What to do with a job after one of its attempts failed.

    `status` is ACTIVATED (a new attempt) or FAILED (give up); `failures` is the job's new count
    of attempts that count against `max_attempts`.
    """

    status: JobStatus
    failures: int


def after_failed_attempt(
    *, failures: int, max_attempts: int, error_code: int | None, kill_requested: bool
) -> AttemptOutcome:
    """Retry a failed attempt as a new attempt until `max_attempts` failures, then give up.

    Preemption and SIGTERM do not count as a failure; a killed job is never retried.
    """
    if kill_requested:
        return AttemptOutcome(JobStatus.CANCELLED, failures)
    if error_code is not None and error_code in NOT_COUNTED:
        return AttemptOutcome(JobStatus.ACTIVATED, failures)
    counted = failures + 1
    if counted < max_attempts:
        return AttemptOutcome(JobStatus.ACTIVATED, counted)
    return AttemptOutcome(JobStatus.FAILED, counted)


def lost_attempt(*, failures: int, max_attempts: int) -> AttemptOutcome:
    """A pilot lost its heartbeat while holding the job: that counts as a failed attempt."""
    return after_failed_attempt(
        failures=failures,
        max_attempts=max_attempts,
        error_code=ErrorCode.LOST_HEARTBEAT,
        kill_requested=False,
    )


def rollup(counts: Mapping[JobStatus, int], *, allow_partial: bool) -> TaskStatus | None:
    """The final state of a task from its job counts, or None while any job has not ended."""
    if any(n for status, n in counts.items() if status not in JOB_FINAL):
        return None
    # Closed jobs were deliberately not run (a user finished the task early): neither a
    # success nor a failure, but the task did not do all its work, so it is not done.
    finished = counts.get(JobStatus.FINISHED, 0)
    bad = counts.get(JobStatus.FAILED, 0) + counts.get(JobStatus.CANCELLED, 0)
    if bad == 0:
        return TaskStatus.FINISHED if counts.get(JobStatus.CLOSED, 0) else TaskStatus.DONE
    if allow_partial and finished > 0:
        return TaskStatus.FINISHED
    return TaskStatus.FAILED
