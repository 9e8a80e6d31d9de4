"""Workflow actions: retry (rerun what failed) and kill (abort every task not ended)."""

from __future__ import annotations

import logging

from skypanda.domain.errors import Conflict, Forbidden, IllegalTransition, NotFound
from skypanda.domain.states import (
    TASK_FINAL,
    TASK_OK,
    TASK_RETRYABLE,
    WORKFLOW_RETRYABLE,
    TaskStatus,
    WorkflowStatus,
)
from skypanda.domain.workflow import Workflow
from skypanda.handlers import known, task_actions, workflow
from skypanda.handlers.ends import task_moved, workflow_moved
from skypanda.handlers.rollup import forget
from skypanda.handlers.services import Services
from skypanda.handlers.submit import check_quota

log = logging.getLogger(__name__)


def _owned(
    svc: Services, workflow_id: str, owner: str | None, action: str, admin: bool
) -> Workflow:
    wf = svc.workflows.get_workflow(workflow_id)
    if owner is not None and not admin and wf.owner != owner:
        raise Forbidden(f"workflow {workflow_id} belongs to {wf.owner}; {owner} cannot {action} it")
    return wf


def _advice(wf: Workflow) -> str:
    """The workflow's state in plain words, and what can still be done with it."""
    if wf.status in WORKFLOW_RETRYABLE:
        return f"it has ended {wf.status}; retry it to rerun its failed and cancelled jobs"
    if wf.status in (WorkflowStatus.DONE, WorkflowStatus.SKIPPED):
        return f"it has ended {wf.status}; nothing is left to do (submit it again to rerun it)"
    return f"it is {wf.status}, not ended: nothing to retry yet (kill it to stop it)"


def retry(svc: Services, workflow_id: str, owner: str | None = None, *, admin: bool = False) -> int:
    """Rerun a failed or killed workflow's failed and cancelled jobs (finished ones are
    kept); tasks that were never made wait for their inputs again. Returns how many jobs were
    reset.

    Raises:
        NotFound: no such workflow. Forbidden: someone else's, and `owner` is no admin.
        Conflict: the workflow has not failed nor been killed (nothing to retry), or jobs of
            it are still being killed.
        QuotaExceeded: its tasks under way again would take its owner past their limits.
    """
    wf = _owned(svc, workflow_id, owner, "retry", admin)
    if wf.status not in WORKFLOW_RETRYABLE:
        raise Conflict(f"cannot retry workflow {workflow_id}: {_advice(wf)}")
    cw = known.compiled(svc, workflow_id)
    latest = workflow.latest(svc.workflows.workflow_tasks(workflow_id))
    again = [t for t in latest.values() if t.status in TASK_FINAL and t.status not in TASK_OK]
    check_quota(svc, wf.owner, len(again), sum(t.n_jobs for t in again))  # they count again
    made = {  # which killed tasks have jobs (none still held by a pilot)
        t.id: bool(task_actions.stopped_jobs(svc, t))
        for t in latest.values()
        if t.status is TaskStatus.ABORTED
    }
    if not svc.workflows.set_workflow_status(
        workflow_id, [wf.status], WorkflowStatus.RUNNING,
        events=workflow_moved(svc, wf, WorkflowStatus.RUNNING, "retried"),
    ):  # fmt: skip
        raise Conflict(f"workflow {workflow_id} changed while being retried; try again")
    reset = 0
    for name in cw.order:  # parents before children: a child sees its parents' edges reset
        task = latest[name]
        forget(svc, task.id)
        unmade = task.status is TaskStatus.ABORTED and not made[task.id]
        if task.status is TaskStatus.CANCELLED or unmade:
            svc.tasks.set_task_status(
                task.id,
                [task.status],
                TaskStatus.REGISTERED,
                events=task_moved(svc, task, TaskStatus.REGISTERED),
            )
        elif task.status in TASK_RETRYABLE and task.n_jobs:
            svc.tasks.set_task_status(
                task.id,
                [task.status],
                TaskStatus.RUNNING,
                events=task_moved(svc, task, TaskStatus.RUNNING, "retried"),
            )
            reset += task_actions.rerun_jobs(svc, task)
    workflow.advance(svc, workflow_id)
    return reset


def kill(
    svc: Services,
    workflow_id: str,
    reason: str,
    owner: str | None = None,
    *,
    admin: bool = False,
) -> Workflow:
    """Abort every task of the workflow that has not ended, then the workflow.

    Raises:
        NotFound: no such workflow. Forbidden: someone else's, and `owner` is no admin.
        Conflict: the workflow has ended (saying what can be done).
    """
    wf = _owned(svc, workflow_id, owner, "kill", admin)
    if wf.status not in (WorkflowStatus.REGISTERED, WorkflowStatus.RUNNING, WorkflowStatus.FAILED):
        raise Conflict(f"cannot kill workflow {workflow_id}: {_advice(wf)}")
    svc.workflows.set_workflow_status(
        workflow_id,
        [WorkflowStatus.REGISTERED, WorkflowStatus.RUNNING, WorkflowStatus.FAILED],
        WorkflowStatus.ABORTED,
        reason=reason,
        events=workflow_moved(svc, wf, WorkflowStatus.ABORTED, reason),
    )
    for task in svc.workflows.workflow_tasks(workflow_id):
        if task.status not in TASK_FINAL:
            try:
                task_actions.kill(svc, task.id, None, reason, advance_workflow=False)
            except (Conflict, IllegalTransition, NotFound) as e:
                log.info("workflow %s: task %s not aborted: %s", workflow_id, task.id, e)
    return svc.workflows.get_workflow(workflow_id)
