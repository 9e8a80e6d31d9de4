"""notify (on task.ended, workflow.ended): tell the world a task or a workflow ended.

The handler builds the notification (`domain.notifications`), publishes it to the
notifications topic (Google Cloud; nowhere locally) and stores one pending delivery per webhook
URL: the task's or workflow's own `notify:` URLs and its owner's registered webhooks. It sends
nothing itself, so a slow receiver never holds an event: the sweep sends the due deliveries
(`send_due`, a bounded batch per tick), signs each attempt, records it, and schedules the next
after a back-off (`domain.webhooks`).

Idempotent: a delivery's id is a hash of (end event, URL), so a redelivered end event adds no
delivery; it may publish the notification again, which subscribers recognise by its `ce-id`.
Delivery to a URL is at least once (an attempt whose answer was lost is tried again): receivers
recognise a repeat by `ce-id` as well.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections import Counter

from skypanda.domain import events as ev
from skypanda.domain.events import TaskEnded, WorkflowEnded
from skypanda.domain.notifications import (
    MAX_REASON_CHARS,
    Notification,
    NotificationCloudEvent,
    cloud_event,
)
from skypanda.domain.webhooks import (
    MAX_BODY_BYTES,
    MAX_WEBHOOKS_PER_OWNER,
    SIGNATURE_HEADER,
    Delivery,
    DeliveryState,
    backoff,
    outcome,
    signature,
)
from skypanda.handlers.services import Services
from skypanda.ports.notifications import WebhookRequest

log = logging.getLogger(__name__)

SEND_BATCH = 32
"""Deliveries attempted per sweep at most (each bounded by its timeout, several at once)."""
SOURCE = "/skypanda"
"""The CloudEvents `source` unless the services' settings name one (`notification_source`)."""


def handle(svc: Services, payload: TaskEnded | WorkflowEnded) -> None:
    note, event_id, urls = (
        _task(svc, payload) if isinstance(payload, TaskEnded) else _workflow(svc, payload)
    )
    source = str(svc.settings.get("notification_source") or SOURCE)
    event = cloud_event(event_id, source, note)
    hooks = [h.url for h in svc.webhooks.list_webhooks(note.owner)[:MAX_WEBHOOKS_PER_OWNER]]
    deliveries = _deliveries(svc, event, [*urls, *hooks])
    svc.webhooks.add_deliveries(deliveries)  # first: a failed publish below redelivers
    if svc.notifier is not None:
        svc.notifier.publish(event)
    log.info("%s %s: notified (%d webhooks)", note.kind, note.id, len(deliveries))


def _task(svc: Services, p: TaskEnded) -> tuple[Notification, str, list[str]]:
    task = svc.tasks.get_task(p.task_id)
    event_id = ev.task_ended(
        p.task_id, p.status, owner=p.owner, name=p.name, workflow_id=p.workflow_id, at=p.at
    ).id
    note = Notification(
        kind="task", id=task.id, name=task.spec.name, owner=task.owner, status=p.status,
        reason=(p.reason or task.reason)[:MAX_REASON_CHARS], workflow_id=task.workflow_id,
        job_counts=dict(task.job_counts), created_at=task.created_at,
        ended_at=p.at or task.updated_at, path=f"/v1/tasks/{task.id}",
    )  # fmt: skip
    return note, event_id, list(task.spec.notify)


def _workflow(svc: Services, p: WorkflowEnded) -> tuple[Notification, str, list[str]]:
    wf = svc.workflows.get_workflow(p.workflow_id)
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
    return note, event_id, list(wf.spec.notify)


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
