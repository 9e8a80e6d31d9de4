"""Killing one job (PanDA's killJobs), decided here: what a kill does to a job as read, and
what the user is told of it.

A job no pilot holds yet (defined, activated) ends `cancelled` at once, with its `job.ended`
event in the same compare-and-set, so what follows any end follows (its task rolls up, its
children are released as for any parent that did not finish, notifications go out). A job a
pilot holds (sent, starting, running) gets its kill flag: the pilot is told to kill it in its
next heartbeat or update reply, and the attempt then ends cancelled, never retried
(`policy.after_failed_attempt`, `jobflow.requeue_lost`). A job already flagged, or ended,
is left as it is: a kill is idempotent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from skypanda.domain import events as ev
from skypanda.domain.jobflow import JobChange
from skypanda.domain.models import Job
from skypanda.domain.states import JOB_FINAL, JOB_LIVE, JOB_QUEUED, JobStatus, advance

__all__ = [
    "MAX_KILL_JOBS",
    "WRITTEN",
    "JobKill",
    "KillResult",
    "kill",
    "killable",
    "may_be_a_job_id",
    "not_found",
    "not_yours",
    "outcome",
    "too_many",
]

MAX_KILL_JOBS = 1000
"""Jobs killed in one request at most (one read and one batch of writes)."""

_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
"""What a job id can be (a task id, `-`, 12 hex digits; tests' tasks have short ids): a text
that cannot name a job (a `/`, a leading `_` or `.`, over 200 characters) is not looked up
(a store's key could not hold it)."""


class KillResult(StrEnum):
    """What a kill did to one job."""

    KILLED = "killed"  # no pilot held it: cancelled now
    KILL_REQUESTED = "kill_requested"  # its pilot is told to kill it; it then ends cancelled
    BEING_KILLED = "being_killed"  # its kill was requested already: nothing written
    ENDED = "ended"  # it had ended: nothing written
    NOT_FOUND = "not_found"
    NOT_YOURS = "not_yours"


WRITTEN = frozenset({KillResult.KILLED, KillResult.KILL_REQUESTED})
"""The results of a kill that changed the job."""


@dataclass(frozen=True)
class JobKill:
    """One job's answer to a kill: the result, the job's status after it (None: no such
    job), and a line saying so."""

    job_id: str
    result: KillResult
    status: JobStatus | None
    message: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "job_id": self.job_id,
            "result": str(self.result),
            "status": None if self.status is None else str(self.status),
            "message": self.message,
        }


def may_be_a_job_id(text: str) -> bool:
    """Whether `text` can be a job's id (else no job has it, and none is looked up)."""
    return _JOB_ID.fullmatch(text) is not None


def too_many(n: int) -> str:
    """The refusal of a kill of `n` jobs, over MAX_KILL_JOBS."""
    return (
        f"at most {MAX_KILL_JOBS:,} jobs can be killed in one request, not {n:,}: "
        "send them in several (or kill their task)"
    )


def killable(job: Job) -> bool:
    """Whether a kill would change `job`: queued (cancelled at once), or held by a pilot and
    not yet flagged (its pilot is told)."""
    return job.status in JOB_QUEUED or (job.status in JOB_LIVE and not job.kill_requested)


def kill(job: Job, now: float, reason: str) -> JobChange | None:
    """The change a kill makes to `job` as read, or None when it makes none (the job has
    ended, or its kill was requested already). `reason` is a cancelled job's diagnosis."""
    if job.status in JOB_QUEUED:
        after = job.model_copy(
            update={
                "status": advance(job.status, JobStatus.CANCELLED),
                "updated_at": now,
                "ended_at": now,
                "error_diag": reason,
            }
        )
        ended = ev.job_ended(job.id, job.attempt, job.task_id, str(JobStatus.CANCELLED))
        return JobChange(job, after, None, (ended,))
    if killable(job):
        after = job.model_copy(update={"kill_requested": True, "updated_at": now})
        return JobChange(job, after)
    return None


def outcome(job: Job, change: JobChange | None) -> JobKill:
    """What the user is told of a kill of `job` (as read) that made `change`."""
    if change is not None:
        after = change.after
        if after.status is JobStatus.CANCELLED:
            line = f"job {job.id} was {job.status}: cancelled"
            return JobKill(job.id, KillResult.KILLED, after.status, line)
        line = (
            f"job {job.id} is {job.status} on pilot {job.pilot_id}: its pilot is told to kill "
            "it, and it then ends cancelled"
        )
        return JobKill(job.id, KillResult.KILL_REQUESTED, after.status, line)
    if job.status in JOB_FINAL:
        line = f"job {job.id} has ended {job.status}: nothing to kill"
        return JobKill(job.id, KillResult.ENDED, job.status, line)
    line = f"job {job.id} is being killed already (its pilot {job.pilot_id} is told to)"
    return JobKill(job.id, KillResult.BEING_KILLED, job.status, line)


def not_found(job_id: str) -> JobKill:
    return JobKill(job_id, KillResult.NOT_FOUND, None, f"no job with id {job_id!r}")


def not_yours(job: Job, who: str) -> JobKill:
    line = f"job {job.id} belongs to {job.owner}; {who} cannot kill it"
    return JobKill(job.id, KillResult.NOT_YOURS, job.status, line)
