"""Events: what one step of the flow tells the next. Each becomes a CloudEvent on delivery.

An event's `id` makes duplicate delivery harmless to recognise; handlers are idempotent anyway
(every write they make is compare-and-set), so a redelivered event changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    """CloudEvent `type` values skypanda emits (reverse-DNS, as CloudEvents recommends)."""

    TASK_REGISTERED = "dev.skypanda.task.registered"  # -> split
    WORKFLOW_REGISTERED = "dev.skypanda.workflow.registered"  # -> workflow start (make jobs)
    JOBS_ACTIVATED = "dev.skypanda.jobs.activated"  # -> scale (a nudge: new work on a queue)
    JOB_ENDED = "dev.skypanda.job.ended"  # -> release (rollup, children)
    TICK = "dev.skypanda.tick"  # -> scale, sweep (Cloud Scheduler on GCP, a timer locally)


@dataclass(frozen=True)
class Event:
    id: str
    type: EventType
    subject: str
    data: dict[str, Any] = field(default_factory=dict)


def job_ended(job_id: str, attempt: int, task_id: str, status: str) -> Event:
    # The id is derived from (job, attempt, status): the same end, reported twice, is one event.
    return Event(
        id=f"job-ended:{job_id}:{attempt}:{status}",
        type=EventType.JOB_ENDED,
        subject=f"jobs/{job_id}",
        data={"job_id": job_id, "task_id": task_id, "attempt": attempt, "status": status},
    )


def task_registered(task_id: str) -> Event:
    return Event(
        id=f"task-registered:{task_id}",
        type=EventType.TASK_REGISTERED,
        subject=f"tasks/{task_id}",
        data={"task_id": task_id},
    )


def jobs_activated(queue: str, count: int, key: str) -> Event:
    return Event(
        id=f"jobs-activated:{queue}:{key}",
        type=EventType.JOBS_ACTIVATED,
        subject=f"queues/{queue}",
        data={"queue": queue, "count": count},
    )


def workflow_registered(workflow_id: str) -> Event:
    return Event(
        id=f"workflow-registered:{workflow_id}",
        type=EventType.WORKFLOW_REGISTERED,
        subject=f"workflows/{workflow_id}",
        data={"workflow_id": workflow_id},
    )
