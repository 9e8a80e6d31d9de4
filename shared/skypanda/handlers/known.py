"""What handlers remember between events in one process (a Cloud Function instance serves
many in a row): things that never change once stored, so no entry can go stale, and one
short-lived fact (a task being paused) whose staleness is bounded and harmless.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from skypanda.domain.models import Task
from skypanda.domain.states import TaskStatus
from skypanda.domain.workflow import CompiledWorkflow, compile_workflow
from skypanda.handlers.services import Services

MAX_ENTRIES = 10_000
PAUSE_TTL_S = 2.0
"""How long a task's paused-or-not is reused: a pause holds released children back within
this (running and just-claimed jobs go on anyway)."""

_TASKS: OrderedDict[str, Task] = OrderedDict()
_COMPILED: OrderedDict[str, CompiledWorkflow] = OrderedDict()
_PAUSED: dict[str, tuple[float, bool]] = {}


def task(svc: Services, task_id: str) -> Task:
    """The task as first read. Use only what never changes: id, spec, owner, workflow_id,
    iteration, created_at (not status, reason or counts).

    Raises:
        NotFound: no such task.
    """
    known = _TASKS.get(task_id)
    if known is None:
        known = _TASKS[task_id] = svc.store.get_task(task_id, counts=False)
        while len(_TASKS) > MAX_ENTRIES:
            _TASKS.popitem(last=False)
    return known


def compiled(svc: Services, workflow_id: str) -> CompiledWorkflow:
    """The workflow's compiled spec (a workflow's spec never changes).

    Raises:
        NotFound: no such workflow.
    """
    cw = _COMPILED.get(workflow_id)
    if cw is None:
        cw = _COMPILED[workflow_id] = compile_workflow(svc.store.get_workflow(workflow_id).spec)
        while len(_COMPILED) > MAX_ENTRIES:
            _COMPILED.popitem(last=False)
    return cw


def paused(svc: Services, task_id: str) -> bool:
    """Whether the task is paused, as read at most PAUSE_TTL_S ago."""
    now = time.monotonic()
    seen = _PAUSED.get(task_id)
    if seen is None or now - seen[0] > PAUSE_TTL_S:
        status = svc.store.get_task(task_id, counts=False).status
        seen = _PAUSED[task_id] = (now, status is TaskStatus.PAUSED)
        if len(_PAUSED) > MAX_ENTRIES:
            _PAUSED.clear()
    return seen[1]


def forget_pause(task_id: str) -> None:
    """This process paused or resumed the task: read it afresh next time."""
    _PAUSED.pop(task_id, None)
