"""The events a task's or a workflow's move writes in its own commit: its end, and, opted in
(`notify_on: [state]`), the move itself.

Every move of a task or workflow to an end status carries its `task.ended` / `workflow.ended`
event in the same compare-and-set as the status (`events=`), so a notification or a chained
start is never lost to a crash between the two, and never sent for a move that lost its race.
A task or workflow that opted in to state changes (itself, or its workflow) also carries a
`task.changed` / `workflow.changed` event with every move, by the same compare-and-set; one that
did not pays a look at its spec, which every caller has in hand or cached (`known`).
"""

from __future__ import annotations

from skypanda.domain import events as ev
from skypanda.domain.events import Event
from skypanda.domain.models import Task
from skypanda.domain.notifications import NotifyOn, notified
from skypanda.domain.states import TASK_FINAL, WORKFLOW_FINAL, TaskStatus, WorkflowStatus
from skypanda.domain.workflow import Workflow
from skypanda.handlers import known
from skypanda.handlers.services import Services


def task_notified(svc: Services, task: Task) -> frozenset[NotifyOn]:
    """What is notified about `task`: its `notify_on` and its workflow's. Reads nothing but
    the (cached) compiled workflow: both specs never change."""
    if task.workflow_id is None:
        return frozenset(task.spec.notify_on)
    return notified(task.spec.notify_on, known.compiled(svc, task.workflow_id).spec.notify_on)


def task_moved(
    svc: Services,
    task: Task,
    to: TaskStatus,
    reason: str = "",
    *,
    previous: TaskStatus | None = None,
) -> list[Event]:
    """The events to write with `task`'s move to `to` from `previous` (default: the status
    `task` was read with, which the caller's compare-and-set expects): its end event if `to`
    is an end, and its change event if it opted in to state changes."""
    at = svc.clock.now()
    found: list[Event] = []
    if to in TASK_FINAL:
        found.append(
            ev.task_ended(
                task.id,
                str(to),
                owner=task.owner,
                name=task.spec.name,
                workflow_id=task.workflow_id,
                at=at,
                reason=reason,
            )
        )
    frm = task.status if previous is None else previous
    if frm is not to and NotifyOn.STATE in task_notified(svc, task):
        found.append(ev.task_changed(task.id, str(frm), str(to), at=at, reason=reason))
    return found


def workflow_moved(
    svc: Services,
    wf: Workflow,
    to: WorkflowStatus,
    reason: str = "",
    *,
    previous: WorkflowStatus | None = None,
) -> list[Event]:
    """The events to write with `wf`'s move to `to` (from `previous`, default the status it
    was read with): its end event if `to` is an end, its change event if it opted in."""
    at = svc.clock.now()
    found: list[Event] = []
    if to in WORKFLOW_FINAL:
        found.append(
            ev.workflow_ended(
                wf.id, str(to), owner=wf.owner, name=wf.spec.name, at=at, reason=reason
            )
        )
    frm = wf.status if previous is None else previous
    if frm is not to and NotifyOn.STATE in wf.spec.notify_on:
        found.append(ev.workflow_changed(wf.id, str(frm), str(to), at=at, reason=reason))
    return found
