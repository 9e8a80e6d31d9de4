"""Task actions (JEDI's): finish, reassign, change priority; each checked against ownership.

Kill (abort) and retry live in the store and `handlers.workflow`; these are the rest. Each
touches only the task's queued jobs (one bulk compare-and-set write per job in the store) and
never a running payload, except a hard finish, which asks the pilots to kill them.
"""

from __future__ import annotations

import logging

from skypanda.domain import events as ev
from skypanda.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from skypanda.domain.models import Task
from skypanda.domain.states import TaskStatus
from skypanda.handlers import known
from skypanda.handlers.services import Services

log = logging.getLogger(__name__)

ACTIVE = (TaskStatus.READY, TaskStatus.RUNNING, TaskStatus.PAUSED)
MAX_PRIORITY = 1_000_000


def _owned(svc: Services, task_id: str, owner: str, action: str) -> Task:
    task = svc.store.get_task(task_id, counts=False)
    if task.owner != owner:
        raise Forbidden(f"task {task_id} belongs to {task.owner}; {owner} cannot {action} it")
    return task


def _owned_active(svc: Services, task_id: str, owner: str, action: str) -> Task:
    task = _owned(svc, task_id, owner, action)
    if task.status not in ACTIVE:
        raise Conflict(
            f"cannot {action} task {task_id}: it is {task.status}, not ready, running or paused"
        )
    return task


def finish(svc: Services, task_id: str, owner: str, *, hard: bool) -> Task:
    """No new job of the task runs: its queued jobs are closed. Soft: running jobs complete;
    hard: they are killed too. The task then ends `finished` (or failed, if jobs failed).

    Raises:
        NotFound, Forbidden, Conflict (the task is not ready or running).
    """
    from skypanda.handlers import release, workflow

    task = _owned_active(svc, task_id, owner, "finish")
    how = "hard" if hard else "soft"
    closed = svc.store.finish_task(task_id, f"closed: task finished ({how}) by {owner}", hard=hard)
    log.info("task %s finished (%s): %d queued jobs closed", task_id, how, closed)
    ended, fresh = release.roll_up_task_fresh(svc, task_id)
    if ended is not None and fresh and task.workflow_id is not None:
        workflow.advance(svc, task.workflow_id)
    return svc.store.get_task(task_id)


def reassign(svc: Services, task_id: str, owner: str, queue: str) -> int:
    """Move the task's queued jobs to another queue (they must fit it). Returns how many.

    Raises:
        NotFound, Forbidden, Conflict; InvalidInput: unknown queue, or the jobs do not fit it.
    """
    task = _owned_active(svc, task_id, owner, "reassign")
    try:
        target = svc.store.get_queue(queue)
    except NotFound as e:
        raise InvalidInput(f"unknown queue {queue!r}", field="queue") from e
    if not task.spec.resources.fits(target.pilot_resources):
        raise InvalidInput(
            f"task {task_id} needs {task.spec.resources.memory_mb} MB x "
            f"{task.spec.resources.cores} cores; queue {queue} offers "
            f"{target.pilot_resources.memory_mb} MB x {target.pilot_resources.cores}",
            field="queue",
        )
    moved = svc.store.reassign_jobs(task_id, queue=queue, priority=None)
    if moved:
        svc.store.add_events([ev.jobs_activated(queue, moved, key=f"{task_id}:to:{queue}:{moved}")])
    log.info("task %s: %d queued jobs reassigned to %s", task_id, moved, queue)
    return moved


def set_priority(svc: Services, task_id: str, owner: str, priority: int) -> int:
    """Give the task's queued jobs a new priority. Returns how many.

    Raises:
        NotFound, Forbidden, Conflict; InvalidInput: priority out of range.
    """
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidInput(f"priority must be between {-MAX_PRIORITY} and {MAX_PRIORITY}")
    _owned_active(svc, task_id, owner, "change the priority of")
    return svc.store.reassign_jobs(task_id, queue=None, priority=priority)


def pause(svc: Services, task_id: str, owner: str) -> Task:
    """No job of the task is dispatched until it is resumed: its activated jobs go back to
    defined (running ones go on; children whose parents end meanwhile wait for the resume).

    Raises:
        NotFound, Forbidden, Conflict (not ready or running).
    """
    task = _owned_active(svc, task_id, owner, "pause")
    if task.status is TaskStatus.PAUSED:
        return task
    if not svc.store.set_task_status(
        task_id, [task.status], TaskStatus.PAUSED, reason=f"paused by {owner}"
    ):
        raise Conflict(f"task {task_id} changed while being paused; try again")
    known.forget_pause(task_id)
    held = svc.store.pause_jobs(task_id)
    log.info("task %s paused: %d queued jobs held back", task_id, held)
    return svc.store.get_task(task_id)


def resume(svc: Services, task_id: str, owner: str) -> Task:
    """Dispatch a paused task's jobs again (those not waiting for a parent).

    Raises:
        NotFound, Forbidden, Conflict (not paused).
    """
    from skypanda.handlers import release

    task = _owned(svc, task_id, owner, "resume")
    if task.status is not TaskStatus.PAUSED:
        raise Conflict(f"cannot resume task {task_id}: it is {task.status}, not paused")
    if not svc.store.set_task_status(task_id, [TaskStatus.PAUSED], TaskStatus.RUNNING, reason=""):
        raise Conflict(f"task {task_id} changed while being resumed; try again")
    known.forget_pause(task_id)
    back = svc.store.resume_jobs(task_id)
    if back:
        svc.store.add_events(
            [ev.jobs_activated(task.spec.queue, back, key=f"{task_id}:resume:{back}")]
        )
    release.roll_up_task(svc, task_id)  # every job may have ended while it was paused
    log.info("task %s resumed: %d jobs activated", task_id, back)
    return svc.store.get_task(task_id)
