"""Reads through the services' `Memory`: what never changes is read once per process."""

from __future__ import annotations

from skypanda.domain.models import Task
from skypanda.domain.states import TaskStatus
from skypanda.domain.workflow import CompiledWorkflow, compile_workflow
from skypanda.handlers.services import Services


def task(svc: Services, task_id: str) -> Task:
    """The task as first read. Use only what never changes: id, spec, owner, workflow_id,
    iteration, created_at (not status, reason or counts).

    Raises:
        NotFound: no such task.
    """
    known = svc.memory.tasks.get(task_id)
    if known is None:
        known = svc.memory.tasks[task_id] = svc.tasks.get_task(task_id, counts=False)
    return known


def compiled(svc: Services, workflow_id: str) -> CompiledWorkflow:
    """The workflow's compiled spec (a workflow's spec never changes).

    Raises:
        NotFound: no such workflow.
    """
    cw = svc.memory.compiled.get(workflow_id)
    if cw is None:
        spec = svc.workflows.get_workflow(workflow_id).spec
        cw = svc.memory.compiled[workflow_id] = compile_workflow(spec)
    return cw


def paused(svc: Services, task_id: str) -> bool:
    """Whether the task is paused, as read at most PAUSE_TTL_S ago."""
    seen = svc.memory.paused.get(task_id)
    if seen is None:
        status = svc.tasks.get_task(task_id, counts=False).status
        seen = svc.memory.paused[task_id] = status is TaskStatus.PAUSED
    return seen


def forget_pause(svc: Services, task_id: str) -> None:
    """This process paused or resumed the task: read it afresh next time."""
    svc.memory.paused.pop(task_id, None)
