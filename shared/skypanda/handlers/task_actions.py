"""Task actions (JEDI's): kill, finish, pause, resume, reassign, change priority, retry; each
checked against ownership.

Each but retry is a task-wide change of jobs (`domain.bulk`) carried out by `handlers.bulk`:
the task moves compare-and-set with the first page's event in the same commit, so a crash part
way is resumed by the outbox. They touch only the task's queued jobs, except kill and a hard
finish, which ask the pilots to kill the running ones (the pilot learns it from its next
heartbeat reply).
"""

from __future__ import annotations

import logging

from skypanda.domain import events as ev
from skypanda.domain.bulk import Action
from skypanda.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from skypanda.domain.models import Task
from skypanda.domain.states import (
    JOB_LIVE,
    TASK_FINAL,
    TASK_RETRYABLE,
    JobStatus,
    TaskStatus,
    advance,
)
from skypanda.domain.values import MAX_PRIORITY
from skypanda.handlers import bulk, known, workflow
from skypanda.handlers.ends import task_moved
from skypanda.handlers.rollup import forget, roll_up_task
from skypanda.handlers.services import Services
from skypanda.handlers.submit import check_quota

log = logging.getLogger(__name__)

ACTIVE = (TaskStatus.READY, TaskStatus.RUNNING, TaskStatus.PAUSED)


def _owned(
    svc: Services, task_id: str, owner: str | None, action: str, admin: bool = False
) -> Task:
    """The task, if `owner` may act on it: its owner, an admin, or the system (None, e.g. a
    workflow's kill).

    Raises:
        NotFound; Forbidden: someone else's task, and `owner` is no admin.
    """
    task = svc.tasks.get_task(task_id, counts=False)
    if owner is not None and not admin and task.owner != owner:
        raise Forbidden(f"task {task_id} belongs to {task.owner}; {owner} cannot {action} it")
    return task


def _owned_active(
    svc: Services, task_id: str, owner: str, action: str, admin: bool = False
) -> Task:
    task = _owned(svc, task_id, owner, action, admin)
    if task.status not in ACTIVE:
        raise Conflict(f"cannot {action} task {task_id}: {state_advice(task)}")
    return task


def state_advice(task: Task, *, made: bool = True) -> str:
    """The task's state in plain words, and what can still be done with it (for the
    refusal of an action that its state does not allow). `made=False`: it has no jobs."""
    status = task.status
    if status in TASK_RETRYABLE:
        if task.workflow_id is not None:
            return f"it has ended {status}; retry its workflow {task.workflow_id} to rerun it"
        if not task.n_jobs or not made:
            return f"it has ended {status} before it had jobs; submit it again to run it"
        return f"it has ended {status}; retry it to rerun its failed and cancelled jobs"
    if status in TASK_FINAL:
        if status is TaskStatus.CANCELLED and task.workflow_id is not None:
            return f"it was cancelled; retry its workflow {task.workflow_id} to run it"
        return f"it has ended {status}; nothing is left to do (submit it again to rerun it)"
    if status is TaskStatus.PENDING:
        return "it is pending (no queue fits it yet, or it waits for its start_after); kill it"
    return f"it is {status} (its jobs are not made yet); try again in a moment, or kill it"


def kill(
    svc: Services,
    task_id: str,
    owner: str | None,
    reason: str,
    *,
    admin: bool = False,
    advance_workflow: bool = True,
) -> Task:
    """Abort the task: its queued jobs are cancelled, its running ones killed by their pilots;
    in a workflow, the tasks waiting for it are cancelled (`advance_workflow`).

    Raises:
        NotFound, Forbidden; Conflict: the task has ended already (saying what can be done).
    """
    task = _owned(svc, task_id, owner, "kill", admin)
    if task.status in TASK_FINAL:
        raise Conflict(f"cannot kill task {task_id}: {state_advice(task)}")
    advance(task.status, TaskStatus.ABORTED)
    bulk.start(svc, task, Action.KILL, {"reason": reason}, to=TaskStatus.ABORTED, reason=reason)
    known.forget_pause(svc, task_id)
    log.info("task %s killed: %s", task_id, reason)
    if advance_workflow and task.workflow_id is not None:
        workflow.advance(svc, task.workflow_id)
    return svc.tasks.get_task(task_id)


def finish(svc: Services, task_id: str, owner: str, *, hard: bool, admin: bool = False) -> Task:
    """No new job of the task runs: its queued jobs are closed. Soft: running jobs complete;
    hard: they are killed too. The task then ends `finished` (or failed, if jobs failed).

    Raises:
        NotFound, Forbidden, Conflict (the task is not ready or running).
    """
    task = _owned_active(svc, task_id, owner, "finish", admin)
    how = "hard" if hard else "soft"
    action = Action.FINISH_HARD if hard else Action.FINISH
    closed = bulk.start(svc, task, action, {"reason": f"closed: task finished ({how}) by {owner}"})
    log.info("task %s finished (%s): %s queued jobs closed", task_id, how, closed)
    return svc.tasks.get_task(task_id)


def reassign(
    svc: Services, task_id: str, owner: str, queue: str, *, admin: bool = False
) -> int | None:
    """Move the task's queued jobs to another queue (they must fit it). Returns how many moved
    (None: the move goes on in pages).

    Raises:
        NotFound, Forbidden, Conflict; InvalidInput: unknown queue, or the jobs do not fit it.
    """
    task = _owned_active(svc, task_id, owner, "reassign", admin)
    try:
        target = svc.fleet.get_queue(queue)
    except NotFound as e:
        raise InvalidInput(f"unknown queue {queue!r}", field="queue") from e
    if not task.spec.resources.fits(target.pilot_resources):
        raise InvalidInput(
            f"task {task_id} needs {task.spec.resources.memory_mb} MB x "
            f"{task.spec.resources.cores} cores; queue {queue} offers "
            f"{target.pilot_resources.memory_mb} MB x {target.pilot_resources.cores}",
            field="queue",
        )
    moved = bulk.start(svc, task, Action.MOVE, {"queue": queue})
    log.info("task %s: %s queued jobs reassigned to %s", task_id, moved, queue)
    return moved


def set_priority(
    svc: Services, task_id: str, owner: str, priority: int, *, admin: bool = False
) -> int | None:
    """Give the task's queued jobs a new priority. Returns how many (None: in pages).

    Raises:
        NotFound, Forbidden, Conflict; InvalidInput: priority out of range.
    """
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidInput(f"priority must be between {-MAX_PRIORITY} and {MAX_PRIORITY}")
    task = _owned_active(svc, task_id, owner, "change the priority of", admin)
    return bulk.start(svc, task, Action.MOVE, {"priority": priority})


def pause(svc: Services, task_id: str, owner: str, *, admin: bool = False) -> Task:
    """No job of the task is dispatched until it is resumed: its activated jobs go back to
    defined (running ones go on; children whose parents end meanwhile wait for the resume).

    Raises:
        NotFound, Forbidden, Conflict (not ready or running).
    """
    task = _owned_active(svc, task_id, owner, "pause", admin)
    if task.status is TaskStatus.PAUSED:
        return task
    held = bulk.start(
        svc, task, Action.PAUSE, {}, to=TaskStatus.PAUSED, reason=f"paused by {owner}"
    )
    known.forget_pause(svc, task_id)
    log.info("task %s paused: %s queued jobs held back", task_id, held)
    return svc.tasks.get_task(task_id)


def resume(svc: Services, task_id: str, owner: str, *, admin: bool = False) -> Task:
    """Dispatch a paused task's jobs again (those not waiting for a parent).

    Raises:
        NotFound, Forbidden, Conflict (not paused).
    """
    task = _owned(svc, task_id, owner, "resume", admin)
    if task.status is not TaskStatus.PAUSED:
        what = (
            state_advice(task) if task.status in TASK_FINAL else f"it is {task.status}, not paused"
        )
        raise Conflict(f"cannot resume task {task_id}: {what}")
    back = bulk.start(svc, task, Action.RESUME, {}, to=TaskStatus.RUNNING)
    known.forget_pause(svc, task_id)
    log.info("task %s resumed: %s jobs activated", task_id, back)
    return svc.tasks.get_task(task_id)


def retry(svc: Services, task_id: str, owner: str | None = None, *, admin: bool = False) -> int:
    """Rerun a failed or killed (plain) task's failed and cancelled jobs. Returns how many
    were reset.

    Raises:
        NotFound, Forbidden; Conflict: the task has not failed nor been killed, has no jobs,
            belongs to a workflow (retry the workflow), or still has jobs being killed.
        QuotaExceeded: the task, under way again, would take its owner past their limits.
    """
    task = _owned(svc, task_id, owner, "retry", admin)
    if task.workflow_id is not None:
        raise Conflict(f"task {task_id} belongs to workflow {task.workflow_id}: retry that")
    if task.status not in TASK_RETRYABLE or not task.n_jobs:
        raise Conflict(f"cannot retry task {task_id}: {state_advice(task)}")
    check_quota(svc, task.owner, 1, task.n_jobs)  # an ended task counts again once retried
    if not stopped_jobs(svc, task):
        raise Conflict(f"cannot retry task {task_id}: {state_advice(task, made=False)}")
    forget(svc, task_id)
    told = task_moved(svc, task, TaskStatus.RUNNING, "retried")
    if not svc.tasks.set_task_status(task_id, [task.status], TaskStatus.RUNNING, events=told):
        raise Conflict(f"task {task_id} changed while being retried; try again")
    return rerun_jobs(svc, task)


def rerun_jobs(svc: Services, task: Task) -> int:
    """Reset a retried task's failed and cancelled jobs (a new attempt each) and return how
    many; with none to reset (a task killed once its jobs had all finished), roll it up now,
    as no job's end will."""
    now = svc.clock.now()
    n = svc.workflows.retry_jobs(task.id, now)
    if n:
        svc.outbox.add_events([ev.jobs_activated(task.spec.queue, n, key=f"{task.id}:retry:{now}")])
    else:
        roll_up_task(svc, task.id)
    return n


def stopped_jobs(svc: Services, task: Task) -> dict[JobStatus, int]:
    """The task's jobs counted by state, once none is held by a pilot any more: a killed task
    is retried once its killed jobs have stopped (a pilot still holding one would report it
    after the retry and end it again). Empty: its jobs were never made.

    Raises:
        Conflict: some job is still held by a pilot (being killed).
    """
    counts = svc.tasks.job_counts(task.id)
    live = sum(counts.get(s, 0) for s in JOB_LIVE)
    if live:
        raise Conflict(
            f"cannot retry task {task.id} yet: {live} of its jobs are still being killed by "
            f"their pilots (within a heartbeat); try again in a moment"
        )
    return counts
