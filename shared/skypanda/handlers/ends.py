"""The end events of tasks and workflows: what a status change writes in its own commit.

Every move of a task or workflow to an end status carries its `task.ended` / `workflow.ended`
event in the same compare-and-set as the status (`events=`), so a notification or a chained
start is never lost to a crash between the two, and never sent for a move that lost its race.
"""

from __future__ import annotations

from skypanda.domain import events as ev
from skypanda.domain.events import Event
from skypanda.domain.models import Task
from skypanda.domain.states import TASK_FINAL, WORKFLOW_FINAL, TaskStatus, WorkflowStatus
from skypanda.domain.workflow import Workflow
from skypanda.handlers.services import Services


def task_end(svc: Services, task: Task, to: TaskStatus, reason: str = "") -> list[Event]:
    """The events to write with `task`'s move to `to`: its end event if `to` is an end."""
    if to not in TASK_FINAL:
        return []
    return [
        ev.task_ended(
            task.id,
            str(to),
            owner=task.owner,
            name=task.spec.name,
            workflow_id=task.workflow_id,
            at=svc.clock.now(),
            reason=reason,
        )
    ]


def workflow_end(svc: Services, wf: Workflow, to: WorkflowStatus, reason: str = "") -> list[Event]:
    """The events to write with `wf`'s move to `to`: its end event if `to` is an end."""
    if to not in WORKFLOW_FINAL:
        return []
    return [
        ev.workflow_ended(
            wf.id, str(to), owner=wf.owner, name=wf.spec.name, at=svc.clock.now(), reason=reason
        )
    ]
