"""How jobs move: made by a split, claimed by a pilot, reported on, requeued, killed.

Each function takes the job as read and returns a `JobChange`: the job as it should be written,
the attempt record, and the events to emit. The store applies it compare-and-set against
`before`, so a stale or duplicate report loses cleanly instead of corrupting the job.
"""

from __future__ import annotations

from dataclasses import dataclass

from skypanda.domain import events as ev
from skypanda.domain.broker import Needs, broker
from skypanda.domain.errors import Conflict
from skypanda.domain.ids import job_id
from skypanda.domain.models import (
    Attempt,
    Job,
    JobReport,
    JobSpec,
    Queue,
    Resources,
    RetryRule,
    Task,
    TaskSpec,
    staged_name,
)
from skypanda.domain.policy import AttemptOutcome, after_failed_attempt, lost_attempt
from skypanda.domain.retry import Limits, decide
from skypanda.domain.splitter import render
from skypanda.domain.states import JOB_FINAL, JOB_LIVE, JobStatus, advance
from skypanda.wire.codes import DESCRIPTIONS, NOT_COUNTED, ErrorCode


@dataclass(frozen=True)
class JobChange:
    """A compare-and-set write of one job: applied only if the stored job still has
    `before.status` and `before.attempt`. `attempt` is the attempt record to upsert alongside;
    `events` go to the outbox in the same transaction."""

    before: Job
    after: Job
    attempt: Attempt | None = None
    events: tuple[ev.Event, ...] = ()


def log_key(job_id: str, attempt: int) -> str:
    """The blob key of one attempt's log."""
    return f"logs/{job_id}/{attempt}.log"


def output_key(job_id: str, attempt: int, name: str) -> str:
    """The blob key of one output an attempt uploaded (`name` as checked by OutputFile)."""
    return f"outputs/{job_id}/{attempt}/{name}"


def new_job(task: Task, spec: JobSpec, now: float) -> Job:
    """A job cut from `task`: activated at once unless it waits for parents.

    A task that stages its inputs in runs its payload on local copies: the command's
    placeholders are filled with the inputs' local names (see TaskSpec), while `inputs` keeps
    the URLs the pilot fetches.
    """
    command = spec.command
    if task.spec.stage_in and spec.inputs:
        local = [_local_name(url) for url in spec.inputs]
        command = render(
            task.spec.command,
            task=task.spec.name,
            index=spec.index,
            inputs=local,
            iteration=task.iteration,
        )
    return Job(
        id=job_id(task.id, spec.index),
        task_id=task.id,
        index=spec.index,
        status=JobStatus.DEFINED if spec.parents else JobStatus.ACTIVATED,
        max_attempts=task.spec.max_attempts,
        queue=task.spec.queue,
        owner=task.owner,
        priority=task.spec.priority,
        resources=task.spec.resources,
        command=command,
        inputs=spec.inputs,
        env=task.spec.env,
        parents=spec.parents,
        created_at=now,
        updated_at=now,
        stage_in=task.spec.stage_in,
        output_patterns=task.spec.outputs,
    )


def _local_name(url: str) -> str:
    # TaskSpec checked a task's own inputs; a graph file's are not checked at submission, and
    # a bad one must not stop the whole split: it stays as given, and the pilot fails that job
    # with STAGE_IN_FAILED, naming the input.
    try:
        return staged_name(url)
    except ValueError:
        return url


def _attempt_record(job: Job, status: JobStatus, now: float, log_uri: str | None) -> Attempt:
    return Attempt(
        job_id=job.id,
        attempt=job.attempt,
        pilot_id=job.pilot_id,
        status=status,
        started_at=job.started_at,
        ended_at=now if status in JOB_FINAL or status == JobStatus.ACTIVATED else None,
        exit_code=job.exit_code,
        error_code=job.error_code,
        error_diag=job.error_diag,
        log_uri=log_uri,
        max_rss_mb=job.max_rss_mb,
    )


def _end_attempt(
    job: Job,
    outcome: AttemptOutcome,
    now: float,
    log_uri: str | None,
    resources: Resources | None = None,
) -> JobChange:
    """Close the current attempt of `job` (whose result fields are already set) per `outcome`;
    a new attempt asks for `resources` when given (a retry rule raised them)."""
    record = _attempt_record(job, JobStatus.FAILED, now, log_uri)
    if outcome.status == JobStatus.ACTIVATED:
        after = job.model_copy(
            update={
                "status": advance(job.status, JobStatus.ACTIVATED),
                "attempt": job.attempt + 1,
                "failures": outcome.failures,
                "pilot_id": None,
                "updated_at": now,
                "log_uri": log_uri,
                "resources": resources or job.resources,
            }
        )
        return JobChange(job, after, record)
    after = job.model_copy(
        update={
            "status": advance(job.status, outcome.status),
            "failures": outcome.failures,
            "updated_at": now,
            "ended_at": now,
            "log_uri": log_uri,
        }
    )
    ended = ev.job_ended(job.id, job.attempt, job.task_id, str(outcome.status))
    return JobChange(job, after, record, (ended,))


def claim(job: Job, pilot_id: str, now: float) -> JobChange:
    """Hand one activated job to a pilot (push mode: the pilot was launched for this job).

    Raises:
        IllegalTransition: the job is not activated (already taken, waiting, or ended).
    """
    after = job.model_copy(
        update={
            "status": advance(job.status, JobStatus.SENT),
            "pilot_id": pilot_id,
            "updated_at": now,
            "started_at": now,
            "exit_code": None,
            "error_code": None,
            "error_diag": "",
            "log_uri": None,
            "ended_at": None,
            "max_rss_mb": None,
            "activated_at": job.updated_at,  # its last change: when it was activated
        }
    )
    record = Attempt(
        job_id=job.id, attempt=job.attempt, pilot_id=pilot_id, status=JobStatus.SENT, started_at=now
    )
    return JobChange(job, after, record)


@dataclass(frozen=True)
class RetryContext:
    """What retry rules need besides the job: the task's rules and its queue's limits."""

    rules: tuple[RetryRule, ...]
    limits: Limits
    spec: TaskSpec | None = None  # the task's spec: where it allows its jobs to go
    queues: tuple[Queue, ...] = ()  # the other queues a job may be moved to (rebrokerage)


def replayed_end(job: Job, report: JobReport, pilot_id: str) -> ev.JobEnded | None:
    """The end this report repeats, or None if it repeats none: the pilot that held the
    attempt reports again the end it reported already, because the answer to its first send
    was lost (a timeout; a request that failed after its commit). Such a report changes
    nothing and is accepted; its children's release is done again (idempotent): the request
    that applied the first send may have died before releasing them."""
    if (
        report.attempt == job.attempt
        and job.pilot_id == pilot_id
        and job.status in JOB_FINAL
        and report.status == job.status
    ):
        return ev.JobEnded(
            job_id=job.id, task_id=job.task_id, attempt=job.attempt, status=str(job.status)
        )
    return None


def apply_report(
    job: Job,
    report: JobReport,
    pilot_id: str,
    now: float,
    log_uri: str,
    retry: RetryContext | None = None,
) -> JobChange:
    """What a pilot's report about its attempt does to the job. A failed attempt is retried
    per `policy.after_failed_attempt`, and, given `retry`, per the task's retry rules (which
    may refuse the retry, or raise the next attempt's memory or walltime).

    Raises:
        Conflict: the report is not about the live attempt this pilot holds (late, duplicate
            after the job moved on, or from a pilot that lost the job).
        IllegalTransition: the job cannot go to the reported state.
    """
    if report.attempt != job.attempt or job.pilot_id != pilot_id or job.status not in JOB_LIVE:
        raise Conflict(
            f"job {job.id} attempt {report.attempt} is not held by pilot {pilot_id} "
            f"(job is {job.status}, attempt {job.attempt})",
            job_id=job.id,
        )
    if report.status in (JobStatus.STARTING, JobStatus.RUNNING):
        after = job.model_copy(
            update={"status": advance(job.status, report.status), "updated_at": now}
        )
        return JobChange(job, after, _attempt_record(after, report.status, now, log_uri))
    result = job.model_copy(
        update={
            "exit_code": report.exit_code,
            "error_code": report.error_code,
            "error_diag": report.error_diag,
            "flags": report.flags,
            "max_rss_mb": report.max_rss_mb,
        }
    )
    if report.status == JobStatus.FINISHED:
        after = result.model_copy(
            update={
                "status": advance(job.status, JobStatus.FINISHED),
                "updated_at": now,
                "ended_at": now,
                "log_uri": log_uri,
                "outputs": report.outputs,
            }
        )
        ended = ev.job_ended(job.id, job.attempt, job.task_id, str(JobStatus.FINISHED))
        return JobChange(
            job, after, _attempt_record(after, JobStatus.FINISHED, now, log_uri), (ended,)
        )
    code = report.error_code if report.error_code is not None else ErrorCode.PAYLOAD_FAILED
    outcome = after_failed_attempt(
        failures=job.failures,
        max_attempts=job.max_attempts,
        error_code=code,
        kill_requested=job.kill_requested,
    )
    failed = result.model_copy(update={"error_code": code})
    if retry is None or outcome.status is not JobStatus.ACTIVATED or code in NOT_COUNTED:
        return _end_attempt(failed, outcome, now, log_uri)
    decision = decide(
        retry.rules,
        error_code=code,
        exit_code=report.exit_code,
        diag=report.error_diag,
        failures=job.failures,
        resources=job.resources,
        limits=retry.limits,
    )
    reason, resources, queue = decision.reason, decision.resources, None
    if decision.rebroker is not None and retry.spec is not None:
        queue = _rebroker(retry, decision.rebroker)
        if queue is not None:
            resources = decision.rebroker
            reason += f"; rebrokered to queue {queue} with {resources.memory_mb} MB"
    if reason:
        failed = failed.model_copy(update={"error_diag": _joined(failed.error_diag, reason)})
    if not decision.retry and queue is None:
        outcome = AttemptOutcome(JobStatus.FAILED, outcome.failures)
    change = _end_attempt(failed, outcome, now, log_uri, resources)
    if queue is not None and change.after.status is JobStatus.ACTIVATED:
        moved = change.after.model_copy(update={"queue": queue})
        change = JobChange(change.before, moved, change.attempt, change.events)
    return change


def _rebroker(retry: RetryContext, wanted: Resources) -> str | None:
    """Another queue the task allows where a job asking for `wanted` fits, or None."""
    assert retry.spec is not None
    needs = Needs.of(retry.spec.model_copy(update={"resources": wanted}))
    return broker(needs, retry.queues, {}).queue


def _joined(diag: str, note: str) -> str:
    return f"{diag}; {note}"[-4000:] if diag else note


def requeue_lost(
    job: Job, now: float, log_uri: str | None, code: ErrorCode = ErrorCode.LOST_HEARTBEAT
) -> JobChange:
    """The pilot holding `job` is gone (or never got it): end its attempt and start a new one
    (or give up). Codes in NOT_COUNTED do not count against max_attempts."""
    lost = job.model_copy(update={"error_code": int(code), "error_diag": DESCRIPTIONS[code]})
    if job.kill_requested:
        outcome = AttemptOutcome(JobStatus.CANCELLED, job.failures)
    elif code in NOT_COUNTED:
        outcome = AttemptOutcome(JobStatus.ACTIVATED, job.failures)
    else:
        outcome = lost_attempt(failures=job.failures, max_attempts=job.max_attempts)
    return _end_attempt(lost, outcome, now, log_uri)
