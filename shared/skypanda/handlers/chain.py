"""chain: when a task or workflow ends (task.ended / workflow.ended), decide the submissions held
by a `start_after` naming it (`domain.chain`): start each whose wanted status it ended with,
end the others `skipped` (never started) with a reason naming the trigger and its status.

A held task is `pending` (unsplit, as one no queue fits yet); a held workflow is `registered`
without its registered event. Starting one is the usual registration: a compare-and-set out of
the hold that writes its `task.registered` / `workflow.registered` event in the same commit, so
a redelivered end event, or two deliveries at once, start it once. Ending one not started
writes its own end event, so chains of chains (A -> B -> C) decide in turn.

The end event may be stale: a failed task can be retried and end again. The handler acts only
while the trigger still has the status the event names; a later end brings its own event.
"""

from __future__ import annotations

import logging

from skypanda.domain import events as ev
from skypanda.domain.chain import StartAfter
from skypanda.domain.errors import InvalidInput, NotFound
from skypanda.domain.events import TaskEnded, WorkflowEnded
from skypanda.domain.models import Task
from skypanda.domain.states import TASK_FINAL, WORKFLOW_FINAL, TaskStatus, WorkflowStatus
from skypanda.domain.workflow import Workflow
from skypanda.handlers.ends import task_moved, workflow_moved
from skypanda.handlers.services import Services

log = logging.getLogger(__name__)

BATCH = 100
"""Held submissions read per query. An end decides all that wait on it, batch after batch: the
work grows with what the event touches (its chained submissions), never with the campaign."""


def handle(svc: Services, payload: TaskEnded | WorkflowEnded) -> None:
    """Decide what waits on the task or workflow that ended (idempotent: see the module)."""
    trigger = payload.task_id if isinstance(payload, TaskEnded) else payload.workflow_id
    kind = "task" if isinstance(payload, TaskEnded) else "workflow"
    now = _current_end(svc, kind, trigger)
    if now != payload.status:
        log.info("chain: %s %s ended %s but is %s now: ignored", kind, trigger, payload.status, now)
        return
    settle(svc, trigger, payload.status)


def check_trigger(svc: Services, after: StartAfter) -> None:
    """A submission's trigger exists (every task and workflow is readable by every user).

    Raises:
        InvalidInput: no such task or workflow.
    """
    try:
        _current_end(svc, after.kind, after.trigger_id)
    except NotFound as e:
        raise InvalidInput(
            f"start_after: no {after.kind} with id {after.trigger_id!r}", field="start_after"
        ) from e


def decide_if_ended(svc: Services, after: StartAfter) -> None:
    """Right after a held submission is stored: if its trigger has ended already, decide now.

    Stored first, checked second: a trigger ending in between is seen here, or its end event
    (committed after the hold) finds the hold; either way it is decided, and deciding twice is
    harmless.
    """
    status = _current_end(svc, after.kind, after.trigger_id)
    if status is not None:
        settle(svc, after.trigger_id, status)


def settle(svc: Services, trigger_id: str, status: str) -> int:
    """Start or skip every submission held on `trigger_id`, which ended with `status`.
    Returns how many this call moved (compare-and-set: a concurrent call moves the others)."""
    moved = 0
    while True:
        tasks = svc.tasks.held_tasks(trigger_id, BATCH)
        won = sum(_settle_task(svc, t, status) for t in tasks)
        moved += won
        if len(tasks) < BATCH or not won:
            break
    while True:
        flows = svc.workflows.held_workflows(trigger_id, BATCH)
        won = sum(_settle_workflow(svc, w, status) for w in flows)
        moved += won
        if len(flows) < BATCH or not won:
            break
    return moved


def _current_end(svc: Services, kind: str, trigger_id: str) -> str | None:
    """The trigger's status if it has ended, else None. Raises NotFound."""
    if kind == "task":
        task_status = svc.tasks.get_task(trigger_id, counts=False).status
        return str(task_status) if task_status in TASK_FINAL else None
    wf_status = svc.workflows.get_workflow(trigger_id).status
    return str(wf_status) if wf_status in WORKFLOW_FINAL else None


def _settle_task(svc: Services, task: Task, status: str) -> bool:
    after = task.spec.start_after
    if after is None:  # not held by a chain: a store answered wrongly; leave it alone
        return False
    if after.starts_on(status):
        told = [ev.task_registered(task.id), *task_moved(svc, task, TaskStatus.REGISTERED)]
        won = svc.tasks.place_task(task.id, task.spec, told)
        if won:
            log.info("chain: task %s starts (%s %s ended %s)", task.id, after.kind,
                     after.trigger_id, status)  # fmt: skip
        return won
    why = after.not_started_reason(status)
    skipped = TaskStatus.SKIPPED
    won = svc.tasks.set_task_status(
        task.id, [TaskStatus.PENDING], skipped, reason=why,
        events=task_moved(svc, task, skipped, why),
    )  # fmt: skip
    if won:
        log.info("chain: task %s %s", task.id, why)
    return won


def _settle_workflow(svc: Services, wf: Workflow, status: str) -> bool:
    after = wf.spec.start_after
    if after is None:
        return False
    if after.starts_on(status):
        registered = [ev.workflow_registered(wf.id)]
        won = svc.workflows.end_hold(wf.id, WorkflowStatus.REGISTERED, events=registered)
        if won:
            log.info("chain: workflow %s starts (%s %s ended %s)", wf.id, after.kind,
                     after.trigger_id, status)  # fmt: skip
        return won
    why = after.not_started_reason(status)
    skipped = WorkflowStatus.SKIPPED
    won = svc.workflows.end_hold(
        wf.id, skipped, reason=why, events=workflow_moved(svc, wf, skipped, why)
    )
    if won:
        # Its tasks never run either (a crash here leaves them registered under a skipped
        # workflow: nothing starts them).
        for task in svc.workflows.workflow_tasks(wf.id):
            if task.status is TaskStatus.REGISTERED:
                svc.tasks.set_task_status(
                    task.id, [TaskStatus.REGISTERED], TaskStatus.SKIPPED, reason=why,
                    events=task_moved(svc, task, TaskStatus.SKIPPED, why),
                )  # fmt: skip
        log.info("chain: workflow %s %s", wf.id, why)
    return won
