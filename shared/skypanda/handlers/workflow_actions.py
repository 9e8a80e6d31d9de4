"""Workflow actions: retry (rerun what failed) and kill (abort every task not ended)."""

from __future__ import annotations

import logging

from skypanda.domain import events as ev
from skypanda.domain.errors import Conflict, Forbidden, IllegalTransition, NotFound
from skypanda.domain.states import TASK_FINAL, TaskStatus, WorkflowStatus
from skypanda.domain.workflow import Workflow
from skypanda.handlers import known, task_actions, workflow
from skypanda.handlers.ends import workflow_end
from skypanda.handlers.rollup import forget
from skypanda.handlers.services import Services

log = logging.getLogger(__name__)


def _owned(
    svc: Services, workflow_id: str, owner: str | None, action: str, admin: bool
) -> Workflow:
    wf = svc.workflows.get_workflow(workflow_id)
    if owner is not None and not admin and wf.owner != owner:
        raise Forbidden(f"workflow {workflow_id} belongs to {wf.owner}; {owner} cannot {action} it")
    return wf


def retry(svc: Services, workflow_id: str, owner: str | None = None, *, admin: bool = False) -> int:
    """Rerun a failed workflow's failed and cancelled jobs (finished ones are kept); tasks that
    were never made wait for their inputs again. Returns how many jobs were reset.

    Raises:
        NotFound: no such workflow. Forbidden: someone else's, and `owner` is no admin.
        Conflict: the workflow has not failed (nothing to retry).
    """
    wf = _owned(svc, workflow_id, owner, "retry", admin)
    if wf.status is not WorkflowStatus.FAILED:
        raise Conflict(f"workflow {workflow_id} is {wf.status}: only a failed workflow is retried")
    cw = known.compiled(svc, workflow_id)
    latest = workflow.latest(svc.workflows.workflow_tasks(workflow_id))
    if not svc.workflows.set_workflow_status(
        workflow_id, [WorkflowStatus.FAILED], WorkflowStatus.RUNNING
    ):
        raise Conflict(f"workflow {workflow_id} changed while being retried; try again")
    reset = 0
    for name in cw.order:  # parents before children: a child sees its parents' edges reset
        task = latest[name]
        forget(svc, task.id)
        if task.status is TaskStatus.CANCELLED:
            svc.tasks.set_task_status(task.id, [TaskStatus.CANCELLED], TaskStatus.REGISTERED)
        elif task.status is TaskStatus.FAILED and task.n_jobs:
            svc.tasks.set_task_status(task.id, [TaskStatus.FAILED], TaskStatus.RUNNING)
            n = svc.workflows.retry_jobs(task.id, svc.clock.now())
            reset += n
            svc.outbox.add_events(
                [ev.jobs_activated(task.spec.queue, n, key=f"{task.id}:retry:{reset}")]
            )
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
        IllegalTransition: the workflow has ended.
    """
    wf = _owned(svc, workflow_id, owner, "kill", admin)
    if wf.status in (WorkflowStatus.DONE, WorkflowStatus.ABORTED):
        raise Conflict(f"workflow {workflow_id} has ended ({wf.status}); nothing to kill")
    svc.workflows.set_workflow_status(
        workflow_id,
        [WorkflowStatus.REGISTERED, WorkflowStatus.RUNNING, WorkflowStatus.FAILED],
        WorkflowStatus.ABORTED,
        reason=reason,
        events=workflow_end(svc, wf, WorkflowStatus.ABORTED, reason),
    )
    for task in svc.workflows.workflow_tasks(workflow_id):
        if task.status not in TASK_FINAL:
            try:
                task_actions.kill(svc, task.id, None, reason, advance_workflow=False)
            except (Conflict, IllegalTransition, NotFound) as e:
                log.info("workflow %s: task %s not aborted: %s", workflow_id, task.id, e)
    return svc.workflows.get_workflow(workflow_id)
