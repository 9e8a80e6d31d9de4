"""The events the monitoring is built on (`wire.logs.LogEvent`), recorded where they happen,
each with its labels and fields: one log line (Cloud Logging's log-based metrics count them on
Google Cloud: infra/terraform/monitoring.tf), and an in-process announcement, whatever the log
level (the API server's Prometheus histograms: `api.metrics`). Handlers call one function here
per event, so that none of them carries the shape of a monitored line.

Delivery is at least once: a redelivered event may log its line again. The counts the store is
the truth of (jobs ended, queue depth, pilots) are read from the store, not from these lines.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from skypanda.domain.fleet import Pilot
from skypanda.domain.jobflow import JobChange
from skypanda.domain.models import Job, Task
from skypanda.domain.states import JobStatus, PilotStatus
from skypanda.wire.logs import LogEvent, announce, event

__all__ = [
    "REQUEUED", "dispatched", "job_changes", "pilot_ended", "pilot_launched", "scaled",
    "task_ended", "task_submitted",
]  # fmt: skip

log = logging.getLogger("skypanda.events")

REQUEUED = "requeued"
"""The `status` of an attempt that ended with its job queued again (a retry)."""


def _record(
    level: int, message: str, args: tuple[Any, ...], name: str, tags: dict[str, Any], **fields: Any
) -> None:
    """Announce the event to this process's listeners and log its line."""
    extra = event(name, tags, **fields)
    announce(name, tags, fields)
    log.log(level, message, *args, extra=extra)


def job_changes(changes: Iterable[JobChange], now: float) -> None:
    """Record the attempts these written changes ended (`job.ended`: with the status the
    attempt ended with, or `requeued` for one taken from a lost pilot, and its error code)."""
    for c in changes:
        job, record = c.after, c.attempt
        if record is None or record.ended_at is None:
            continue
        ended = record.status
        status = REQUEUED if ended is JobStatus.ACTIVATED else str(ended)
        started = record.started_at
        took = None if started is None else round(max(0.0, record.ended_at - started), 3)
        tags = {"job": job.id, "task": job.task_id, "queue": job.queue, "owner": job.owner,
                "pilot": record.pilot_id}  # fmt: skip
        code = "" if record.error_code is None else f", error {record.error_code}"
        said = (job.id, record.attempt, status, code)
        _record(logging.INFO, "job %s attempt %d ended %s%s", said, LogEvent.JOB_ENDED, tags,
                status=status, error_code=record.error_code, duration_s=took)  # fmt: skip


def dispatched(jobs: Iterable[Job], now: float) -> None:
    """Record the attempts just claimed by a pilot (`job.dispatched`, with the wait since the
    attempt became ready to run: `Job.activated_at`, which the claim sets to the job's last
    change before it: its activation, whether at submission, by its parents' ends, a retry or
    a requeue, or a later move while it waited). Every attempt is measured, children and
    retries included."""
    for job in jobs:
        ready = job.created_at if job.activated_at is None else job.activated_at
        waited = round(max(0.0, now - ready), 3)
        tags = {"job": job.id, "task": job.task_id, "queue": job.queue, "owner": job.owner,
                "pilot": job.pilot_id}  # fmt: skip
        _record(logging.INFO, "job %s dispatched %.3f s after it was activated", (job.id, waited),
                LogEvent.JOB_DISPATCHED, tags, latency_s=waited)  # fmt: skip


def task_submitted(task: Task) -> Task:
    tags = {"task": task.id, "owner": task.owner, "workflow": task.workflow_id}
    _record(logging.INFO, "task %s (%s) submitted by %s", (task.id, task.spec.name, task.owner),
            LogEvent.TASK_SUBMITTED, tags)  # fmt: skip
    return task


def task_ended(task: Task, status: str, at: float) -> None:
    took = round(max(0.0, at - task.created_at), 3)
    tags = {"task": task.id, "owner": task.owner, "workflow": task.workflow_id}
    _record(logging.INFO, "task %s ended %s after %.1f s", (task.id, status, took),
            LogEvent.TASK_ENDED, tags, status=status, duration_s=took)  # fmt: skip


def pilot_launched(pilot: Pilot, ref: str) -> None:
    tags = {"pilot": pilot.id, "queue": pilot.queue, "job": pilot.push_job}
    _record(logging.INFO, "pilot %s launched on queue %s (%s)", (pilot.id, pilot.queue, ref),
            LogEvent.PILOT_LAUNCHED, tags)  # fmt: skip


def pilot_ended(pilot: Pilot, reason: str) -> None:
    tags = {"pilot": pilot.id, "queue": pilot.queue}
    fine = pilot.status in (PilotStatus.FINISHED, PilotStatus.CANCELLED)
    _record(logging.INFO if fine else logging.WARNING, "pilot %s ended %s: %s",
            (pilot.id, pilot.status, reason or "-"), LogEvent.PILOT_ENDED, tags,
            status=str(pilot.status))  # fmt: skip


def scaled(queue: str, launch: int, activated: int, reason: str) -> None:
    """A scaler's decision that launches pilots or differs from the queue's last one, with the
    queue's depth as the scaler saw it (the depth the cloud's dashboard plots)."""
    _record(logging.INFO, "queue %s: launch %d: %s", (queue, launch, reason),
            LogEvent.SCALER_DECISION, {"queue": queue}, launch=launch,
            activated=activated)  # fmt: skip
