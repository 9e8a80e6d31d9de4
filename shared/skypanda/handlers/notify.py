"""notify (on task.ended, workflow.ended, and for opted-in tasks and workflows task.changed,
workflow.changed, and job ends through `release`): tell the world a task or a workflow ended,
a job of it ended, or its status changed.

The handler builds the notification (`domain.notifications`), publishes it to the
notifications topic (Google Cloud; nowhere locally) and stores one pending delivery per webhook
URL: the task's or workflow's own `notify:` URLs, the webhooks registered on it by id, and its
owner's webhooks for everything (a job's end or a task's change also goes to its workflow's
URLs and webhooks when the workflow opted in). It sends
nothing itself, so a slow receiver never holds an event: the sweep sends the due deliveries
(`send_due`, a bounded batch per tick), signs each attempt, records it, and schedules the next
after a back-off (`domain.webhooks`).

Job ends are not routed here: `release`, which receives every job end anyway, hands over
those of opted-in tasks (`job_ends`), deciding from the cached task spec, so a job end of a task
that did not opt in costs nothing more than it did.

Idempotent: a delivery's id is a hash of (event, URL), so a redelivered event adds no
delivery; it may publish the notification again, which subscribers recognise by its `ce-id`.
Delivery to a URL is at least once (an attempt whose answer was lost is tried again): receivers
recognise a repeat by `ce-id` as well.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections import Counter
from collections.abc import Sequence

from skypanda.domain import events as ev
from skypanda.domain.events import JobEnded, TaskChanged, TaskEnded, WorkflowChanged, WorkflowEnded
from skypanda.domain.models import Attempt, Job, Task
from skypanda.domain.notifications import (
    MAX_REASON_CHARS,
    JobEndNotification,
    Notification,
    NotificationCloudEvent,
    NotifyOn,
    StateNotification,
    cloud_event,
)
from skypanda.domain.webhooks import (
    MAX_BODY_BYTES,
    MAX_WEBHOOKS_PER_OWNER,
    SIGNATURE_HEADER,
    Delivery,
    DeliveryState,
    Webhook,
    backoff,
    outcome,
    signature,
)
from skypanda.handlers import known, observe
from skypanda.handlers.ends import task_notified
from skypanda.handlers.services import Services
from skypanda.ports.notifications import WebhookRequest

log = logging.getLogger(__name__)

SEND_BATCH = 32
"""Deliveries attempted per sweep at most (each bounded by its timeout, several at once)."""
SOURCE = "/skypanda"
"""The CloudEvents `source` unless the services' settings name one (`notification_source`)."""


Told = tuple[Notification | JobEndNotification | StateNotification, str, list[str], list[str]]
"""A notification, the id of the event it tells, its own URLs (`notify:`), and the subjects
whose webhooks it goes to besides the owner's (`Webhook.applies`)."""


def handle(
    svc: Services, payload: TaskEnded | WorkflowEnded | TaskChanged | WorkflowChanged
) -> None:
    if isinstance(payload, TaskEnded):
        told = _task(svc, payload)
    elif isinstance(payload, WorkflowEnded):
        told = _workflow(svc, payload)
    elif isinstance(payload, TaskChanged):
        told = _task_changed(svc, payload)
    else:
        told = _workflow_changed(svc, payload)
    if told is None:
        return
    _tell(svc, [told])


def job_ends(svc: Services, ended: Sequence[JobEnded]) -> None:
    """Tell the ends of jobs whose tasks opted in (`release` picks them: `job_end_notified`).
    One read of the jobs for the batch; an end whose job has moved on since (a user's retry)
    is told from its attempt's record."""
    unique = list({(e.job_id, e.attempt, e.status): e for e in ended}.values())  # redeliveries
    jobs = svc.jobs.get_jobs([e.job_id for e in unique])
    told: list[Told] = []
    for e in unique:
        job = jobs.get(e.job_id)
        if job is None:
            log.warning("job %s ended but is gone: not notified", e.job_id)
            continue
        task = known.task(svc, e.task_id)
        record = job if job.attempt == e.attempt else _attempt(svc, job, e.attempt)
        told.append(_job(svc, task, job, record, e))
    _tell(svc, told)


def job_end_notified(svc: Services, task_id: str) -> bool:
    """Whether the ends of the task's jobs are told: from the cached task spec (and compiled
    workflow), so the answer costs no read after a task's first job end in this process."""
    return NotifyOn.JOB_END in task_notified(svc, known.task(svc, task_id))


def _tell(svc: Services, told: Sequence[Told]) -> None:
    """Store the deliveries of each notification, then publish each (in this order: a failed
    publish raises, and the event redelivered adds no delivery twice)."""
    source = str(svc.settings.get("notification_source") or SOURCE)
    hooks: dict[str, list[Webhook]] = {}
    deliveries: list[Delivery] = []
    events: list[NotificationCloudEvent] = []
    for note, event_id, urls, scopes in told:
        event = cloud_event(event_id, source, note)
        events.append(event)
        if note.owner not in hooks:
            hooks[note.owner] = svc.webhooks.list_webhooks(note.owner)[:MAX_WEBHOOKS_PER_OWNER]
        theirs = [h.url for h in hooks[note.owner] if h.applies(scopes)]
        deliveries += _deliveries(svc, event, [*urls, *theirs])
    svc.webhooks.add_deliveries(deliveries)  # first: a failed publish below redelivers
    for event in events:
        if svc.notifier is not None:
            svc.notifier.publish(event)
        level = logging.DEBUG if event.data.kind == "job" else logging.INFO  # many: quieter
        log.log(level, "%s: notified (%s)", event.subject, event.type)


def _task(svc: Services, p: TaskEnded) -> Told | None:
    task = svc.tasks.get_task(p.task_id)
    observe.task_ended(task, p.status, p.at or task.updated_at)
    if NotifyOn.END not in task.spec.notify_on:
        log.debug("task %s ended %s: not notified (notify_on)", task.id, p.status)
        return None
    event_id = ev.task_ended(
        p.task_id, p.status, owner=p.owner, name=p.name, workflow_id=p.workflow_id, at=p.at
    ).id
    note = Notification(
        kind="task", id=task.id, name=task.spec.name, owner=task.owner, status=p.status,
        reason=(p.reason or task.reason)[:MAX_REASON_CHARS], workflow_id=task.workflow_id,
        job_counts=dict(task.job_counts), created_at=task.created_at,
        ended_at=p.at or task.updated_at, path=f"/v1/tasks/{task.id}",
    )  # fmt: skip
    return note, event_id, list(task.spec.notify), [f"tasks/{task.id}"]


def _workflow(svc: Services, p: WorkflowEnded) -> Told | None:
    wf = svc.workflows.get_workflow(p.workflow_id)
    if NotifyOn.END not in wf.spec.notify_on:
        log.debug("workflow %s ended %s: not notified (notify_on)", wf.id, p.status)
        return None
    event_id = ev.workflow_ended(p.workflow_id, p.status, owner=p.owner, name=p.name, at=p.at).id
    tasks = svc.workflows.workflow_tasks(wf.id)  # bounded by the workflow's tasks
    jobs: Counter[str] = Counter()
    for t in tasks:
        jobs.update({str(s): n for s, n in svc.tasks.job_counts(t.id).items()})
    note = Notification(
        kind="workflow", id=wf.id, name=wf.spec.name, owner=wf.owner, status=p.status,
        reason=(p.reason or wf.reason)[:MAX_REASON_CHARS], job_counts=dict(jobs),
        task_counts=dict(Counter(str(t.status) for t in tasks)), created_at=wf.created_at,
        ended_at=p.at or wf.updated_at, path=f"/v1/workflows/{wf.id}",
    )  # fmt: skip
    return note, event_id, list(wf.spec.notify), [f"workflows/{wf.id}"]


def _task_changed(svc: Services, p: TaskChanged) -> Told | None:
    task = known.task(svc, p.task_id)  # only what never changes: the change is in the event
    event_id = ev.task_changed(p.task_id, p.previous, p.status, at=p.at, reason=p.reason).id
    note = StateNotification(
        kind="task_state", id=task.id, name=task.spec.name, owner=task.owner,
        workflow_id=task.workflow_id, previous=p.previous, status=p.status,
        reason=p.reason[:MAX_REASON_CHARS], at=p.at, path=f"/v1/tasks/{task.id}",
    )  # fmt: skip
    return note, event_id, *_task_urls(svc, task, NotifyOn.STATE)


def _workflow_changed(svc: Services, p: WorkflowChanged) -> Told | None:
    wf = svc.workflows.get_workflow(p.workflow_id)
    event_id = ev.workflow_changed(p.workflow_id, p.previous, p.status, at=p.at, reason=p.reason)
    note = StateNotification(
        kind="workflow_state", id=wf.id, name=wf.spec.name, owner=wf.owner,
        previous=p.previous, status=p.status, reason=p.reason[:MAX_REASON_CHARS], at=p.at,
        path=f"/v1/workflows/{wf.id}",
    )  # fmt: skip
    return note, event_id.id, list(wf.spec.notify), [f"workflows/{wf.id}"]


def _job(svc: Services, task: Task, job: Job, record: Job | Attempt, e: JobEnded) -> Told:
    event_id = ev.job_ended(e.job_id, e.attempt, e.task_id, e.status).id
    note = JobEndNotification(
        kind="job", id=job.id, task_id=task.id, workflow_id=task.workflow_id,
        name=task.spec.name, owner=task.owner, index=job.index, status=e.status,
        attempt=e.attempt, max_attempts=job.max_attempts, exit_code=record.exit_code,
        error_code=record.error_code, diagnosis=record.error_diag[:MAX_REASON_CHARS],
        log_uri=record.log_uri, pilot_id=record.pilot_id, started_at=record.started_at,
        ended_at=record.ended_at or job.updated_at, path=f"/v1/jobs/{job.id}",
    )  # fmt: skip
    return note, event_id, *_task_urls(svc, task, NotifyOn.JOB_END)


def _attempt(svc: Services, job: Job, attempt: int) -> Job | Attempt:
    """The record of the job's `attempt` (the job itself if none was kept)."""
    return next((a for a in svc.jobs.attempts(job.id) if a.attempt == attempt), job)


def _task_urls(svc: Services, task: Task, what: NotifyOn) -> tuple[list[str], list[str]]:
    """Where a task's job ends or changes go: its `notify:` URLs and webhooks, and its
    workflow's when the workflow opted in to `what` (the URLs, and the subjects)."""
    urls, scopes = list(task.spec.notify), [f"tasks/{task.id}"]
    if task.workflow_id is not None:
        wf = known.compiled(svc, task.workflow_id).spec
        if what in wf.notify_on:
            urls += wf.notify
            scopes.append(f"workflows/{task.workflow_id}")
    return urls, scopes


def _deliveries(svc: Services, event: NotificationCloudEvent, urls: list[str]) -> list[Delivery]:
    body = event.body()
    if len(body) > MAX_BODY_BYTES:  # cannot happen with the bounded fields; never truncate
        log.error("notification %s is %d bytes: not sent to webhooks", event.id, len(body))
        return []
    now = svc.clock.now()
    return [
        Delivery(
            id=hashlib.sha256(f"{event.id}\n{url}".encode()).hexdigest()[:40],
            owner=event.data.owner,
            url=url,
            event_id=event.id,
            subject=event.subject,
            headers=event.headers(),
            body=body.decode(),
            next_at=now,
            created_at=now,
        )
        for url in dict.fromkeys(urls)  # each URL once
    ]


def send_due(svc: Services, now: float) -> int:
    """Send the deliveries due at `now` (at most SEND_BATCH), signed; record each attempt and
    when the next is due. Returns how many were attempted. Called by the sweep."""
    if svc.notifier is None:
        return 0
    due = svc.webhooks.due_deliveries(now, SEND_BATCH)
    if not due:
        return 0
    stamp = int(now)
    keys = {d.owner: svc.webhooks.webhook_secret(d.owner, new_secret()) for d in due}
    requests = [
        WebhookRequest(
            url=d.url,
            headers={
                **d.headers,
                SIGNATURE_HEADER: signature(keys[d.owner], stamp, d.body.encode()),
            },
            body=d.body.encode(),
        )
        for d in due
    ]
    base = svc.settings.get("webhook_backoff_s", 1.0)
    base_s = float(base) if isinstance(base, int | float) else 1.0
    for delivery, attempt in zip(due, svc.notifier.post(requests, now), strict=True):
        tries = len(delivery.attempts) + 1
        state = outcome(attempt.status, tries)
        next_at = now + backoff(tries, base=base_s)
        if not svc.webhooks.record_attempt(delivery, attempt, state, next_at):
            log.info("delivery %s: recorded by another sweep meanwhile", delivery.id)
        if state is DeliveryState.FAILED:
            log.warning(
                "webhook %s for %s: gave up after %d tries", delivery.url, delivery.subject, tries
            )
    return len(due)


def new_secret() -> str:
    """A new signing secret (256 random bits, hex)."""
    return secrets.token_hex(32)
