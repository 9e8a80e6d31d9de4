"""Events: what one step of the flow tells the next. Each becomes a CloudEvent on delivery.

An event's `id` makes duplicate delivery harmless to recognise; handlers are idempotent anyway
(every write they make is compare-and-set), so a redelivered event changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from skypanda.domain.errors import InvalidInput


class EventType(StrEnum):
    """CloudEvent `type` values skypanda emits (reverse-DNS, as CloudEvents recommends)."""

    TASK_REGISTERED = "dev.skypanda.task.registered"  # -> split
    WORKFLOW_REGISTERED = "dev.skypanda.workflow.registered"  # -> workflow start (make jobs)
    JOBS_ACTIVATED = "dev.skypanda.jobs.activated"  # -> scale (a nudge: new work on a queue)
    JOB_ENDED = "dev.skypanda.job.ended"  # -> release (rollup, children)
    TICK = "dev.skypanda.tick"  # -> scale, sweep (Cloud Scheduler on GCP, a timer locally)
    TASK_BULK = "dev.skypanda.task.bulk"  # -> bulk (one page of a task-wide job change)
    TASK_ENDED = "dev.skypanda.task.ended"  # -> notify, chain (a task reached an end status)
    WORKFLOW_ENDED = "dev.skypanda.workflow.ended"  # -> notify, chain (a workflow ended)
    # Only for tasks and workflows that opted in (`notify_on: [state]`):
    TASK_CHANGED = "dev.skypanda.task.changed"  # -> notify (a task's status changed)
    WORKFLOW_CHANGED = "dev.skypanda.workflow.changed"  # -> notify (a workflow's status changed)
    # From outside (other pipelines), not from the outbox:
    SUBMISSION = "dev.skypanda.submission"  # -> intake (a task or workflow, with its key)
    OBJECT_FINALIZED = "dev.skypanda.object.finalized"  # -> watch (a new Cloud Storage object)


@dataclass(frozen=True)
class Event:
    id: str
    type: EventType
    subject: str
    data: dict[str, Any] = field(default_factory=dict)


# -- payloads: what each event type carries, decoded once (`payload_of`) before any handler --


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TaskRef(Payload):
    task_id: str = Field(min_length=1)


class WorkflowRef(Payload):
    workflow_id: str = Field(min_length=1)


class JobEnded(Payload):
    job_id: str = Field(min_length=1)
    task_id: str = Field(min_length=1)
    attempt: int = Field(ge=1)
    status: str
    # Its children are released in the request of the report that ended it (dispatch.update;
    # `release.in_request`), which says so once done (`Outbox.mark_released`).
    in_request: bool = False


class QueueNudge(Payload):
    """New work on a queue (None: look at every queue)."""

    queue: str | None = None
    count: int = 0


class Tick(Payload):
    """A timer's tick (Cloud Scheduler on Google Cloud): scale and sweep every queue."""


class TaskBulk(Payload):
    """The next page of a task-wide job change (kill, finish, pause, ...)."""

    task_id: str = Field(min_length=1)
    action: str = Field(min_length=1)
    run: str = Field(min_length=1)
    page: int = Field(default=0, ge=0)
    args: dict[str, Any] = Field(default_factory=dict)


class TaskEnded(Payload):
    """A task reached an end status (done, failed, finished, aborted, skipped...)."""

    task_id: str = Field(min_length=1)
    status: str = Field(min_length=1)
    owner: str = ""
    name: str = ""
    workflow_id: str | None = None
    reason: str = ""
    at: float = 0.0  # when it ended (the transition's time)


class WorkflowEnded(Payload):
    """A workflow reached an end status."""

    workflow_id: str = Field(min_length=1)
    status: str = Field(min_length=1)
    owner: str = ""
    name: str = ""
    reason: str = ""
    at: float = 0.0  # when it ended (the transition's time)


class TaskChanged(Payload):
    """An opted-in task's status changed (`notify_on: [state]`), its end included."""

    task_id: str = Field(min_length=1)
    previous: str = Field(min_length=1)
    status: str = Field(min_length=1)
    reason: str = ""
    at: float = 0.0  # when it changed (the transition's time)


class WorkflowChanged(Payload):
    """An opted-in workflow's status changed (`notify_on: [state]`), its end included."""

    workflow_id: str = Field(min_length=1)
    previous: str = Field(min_length=1)
    status: str = Field(min_length=1)
    reason: str = ""
    at: float = 0.0


class Submission(Payload):
    """A task or workflow another pipeline submitted by message (`handlers.intake`): the
    document as published (`kind`, `body`, `content_type`: schemas/submission.avsc), the
    publisher's client key, and the owner: the name of the principal whose credential the
    transport verified (`runtime.intake.decode_submission`; a message never names its owner)."""

    kind: str = Field(min_length=1)
    body: str
    key: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    content_type: str = "application/yaml"


class ObjectFinalized(Payload):
    """A new object in Cloud Storage (or a file in a watched folder): `handlers.watch`."""

    bucket: str = Field(min_length=1)
    name: str = Field(min_length=1)
    generation: str = ""
    size: int = 0


PAYLOADS: Mapping[EventType, type[Payload]] = MappingProxyType(
    {
        EventType.TASK_REGISTERED: TaskRef,
        EventType.WORKFLOW_REGISTERED: WorkflowRef,
        EventType.JOBS_ACTIVATED: QueueNudge,
        EventType.JOB_ENDED: JobEnded,
        EventType.TICK: Tick,
        EventType.TASK_BULK: TaskBulk,
        EventType.TASK_ENDED: TaskEnded,
        EventType.WORKFLOW_ENDED: WorkflowEnded,
        EventType.TASK_CHANGED: TaskChanged,
        EventType.WORKFLOW_CHANGED: WorkflowChanged,
        EventType.SUBMISSION: Submission,
        EventType.OBJECT_FINALIZED: ObjectFinalized,
    }
)

SUBSCRIBERS: Mapping[EventType, tuple[str, ...]] = MappingProxyType(
    {
        EventType.TASK_REGISTERED: ("split",),
        EventType.WORKFLOW_REGISTERED: ("workflow",),
        EventType.JOBS_ACTIVATED: ("scale",),
        EventType.JOB_ENDED: ("release",),
        EventType.TICK: ("scale", "sweep"),
        EventType.TASK_BULK: ("bulk",),
        EventType.TASK_ENDED: ("notify", "chain"),
        EventType.WORKFLOW_ENDED: ("notify", "chain"),
        EventType.TASK_CHANGED: ("notify",),
        EventType.WORKFLOW_CHANGED: ("notify",),
        EventType.SUBMISSION: ("intake",),
        EventType.OBJECT_FINALIZED: ("watch",),
    }
)
"""Who receives each event type, by handler name: the routing table as data. On Google Cloud
each name is a Cloud Function with a subscription to the type's topic (job.ended: the
outbox trigger); locally the router delivers to the same names (`handlers.routes`)."""


def payload_of(event: Event) -> Payload:
    """The event's data as its type's payload model.

    Raises:
        InvalidInput: the data is not of the type's shape (the event is poison: delivering it
            again cannot help).
    """
    model = PAYLOADS[event.type]
    try:
        return model.model_validate(event.data or {})
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'data'}: {err['msg']}" for err in e.errors()
        )
        raise InvalidInput(
            f"event {event.id}: bad data for {event.type}: {problems}", event_id=event.id
        ) from e


def job_ended(
    job_id: str, attempt: int, task_id: str, status: str, *, in_request: bool = False
) -> Event:
    # The id is derived from (job, attempt, status): the same end, reported twice, is one event.
    data: dict[str, Any] = {"job_id": job_id, "task_id": task_id, "attempt": attempt,
                            "status": status}  # fmt: skip
    if in_request:
        data["in_request"] = True
    return Event(
        id=f"job-ended:{job_id}:{attempt}:{status}",
        type=EventType.JOB_ENDED,
        subject=f"jobs/{job_id}",
        data=data,
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


def tick(key: str) -> Event:
    """A tick; `key` makes its id (the timer's time, or the scheduler's message id)."""
    return Event(id=f"tick:{key}", type=EventType.TICK, subject="ticks", data={})


def task_bulk(
    task_id: str, action: str, run: str, page: int, args: dict[str, Any] | None = None
) -> Event:
    # One id per (task, action, run, page): a page redelivered or re-emitted is one event;
    # `run` tells two pauses of the same task apart.
    return Event(
        id=f"task-bulk:{task_id}:{action}:{run}:{page}",
        type=EventType.TASK_BULK,
        subject=f"tasks/{task_id}",
        data={"task_id": task_id, "action": action, "run": run, "page": page, "args": args or {}},
    )


def task_ended(
    task_id: str,
    status: str,
    *,
    owner: str,
    name: str,
    workflow_id: str | None,
    at: float,
    reason: str = "",
) -> Event:
    """A task reached an end status, written in the same commit as the status change.

    The id names the transition's time: a task that ends, is retried and ends again (even with
    the same status) makes a new event, while a redelivery of one end is the same event (the
    compare-and-set that writes it wins only once per end).
    """
    return Event(
        id=f"task-ended:{task_id}:{status}:{at:.6f}",
        type=EventType.TASK_ENDED,
        subject=f"tasks/{task_id}",
        data={"task_id": task_id, "status": status, "owner": owner, "name": name,
              "workflow_id": workflow_id, "reason": reason, "at": at},
    )  # fmt: skip


def workflow_ended(
    workflow_id: str, status: str, *, owner: str, name: str, at: float, reason: str = ""
) -> Event:
    """A workflow reached an end status (the id names the time, as for `task_ended`)."""
    return Event(
        id=f"workflow-ended:{workflow_id}:{status}:{at:.6f}",
        type=EventType.WORKFLOW_ENDED,
        subject=f"workflows/{workflow_id}",
        data={"workflow_id": workflow_id, "status": status, "owner": owner, "name": name,
              "reason": reason, "at": at},
    )  # fmt: skip


def task_changed(task_id: str, previous: str, status: str, *, at: float, reason: str = "") -> Event:
    """An opted-in task moved from `previous` to `status`, written in the same commit as the
    move (the id names the move and its time: one event per move, whatever redelivers it)."""
    return Event(
        id=f"task-changed:{task_id}:{previous}:{status}:{at:.6f}",
        type=EventType.TASK_CHANGED,
        subject=f"tasks/{task_id}",
        data={"task_id": task_id, "previous": previous, "status": status, "reason": reason,
              "at": at},
    )  # fmt: skip


def workflow_changed(
    workflow_id: str, previous: str, status: str, *, at: float, reason: str = ""
) -> Event:
    """An opted-in workflow moved from `previous` to `status` (as `task_changed`)."""
    return Event(
        id=f"workflow-changed:{workflow_id}:{previous}:{status}:{at:.6f}",
        type=EventType.WORKFLOW_CHANGED,
        subject=f"workflows/{workflow_id}",
        data={"workflow_id": workflow_id, "previous": previous, "status": status,
              "reason": reason, "at": at},
    )  # fmt: skip
