"""bulk (on task.bulk): a task-wide change of jobs, one page per event.

A task action (`task_actions`: kill, finish, pause, resume, reassign, priority) moves the task
compare-and-set and writes the first `task.bulk` event in the same commit, so the change is
carried out even if the process dies right after: the outbox delivers the event, and each page
emits the next one until the task's last job index is covered. A page is `JobStore.bulk_page`
job indexes (Firestore: a few thousand compare-and-set writes, a bounded function invocation);
a store that applies a bulk to a whole task in one transaction (SQLite) has no pages, and the
action applies it at once, so the event finds nothing left to do. Every page is idempotent
(`domain.bulk`): redelivered, or delivered after the action already applied it, it changes
nothing.

When the last page is done, what follows the action runs here: a finished task rolls up (and
its workflow advances), a resumed or reassigned task nudges the scaler of its queue.
"""

from __future__ import annotations

import logging
from typing import Any

from skypanda.domain import events as ev
from skypanda.domain.bulk import Action, plan
from skypanda.domain.errors import Conflict
from skypanda.domain.events import TaskBulk
from skypanda.domain.models import Task
from skypanda.domain.states import TaskStatus
from skypanda.handlers import workflow
from skypanda.handlers.ends import task_moved
from skypanda.handlers.services import Services, new_id

log = logging.getLogger(__name__)


def start(
    svc: Services,
    task: Task,
    action: Action,
    args: dict[str, Any],
    *,
    to: TaskStatus | None = None,
    reason: str = "",
) -> int | None:
    """Begin an action on `task` (as read): move it to `to` if given, compare-and-set, with the
    first page's event in the same commit; without `to`, just write the event. When the store
    has no pages, apply the whole action now and return how many jobs changed; else None
    (pages follow, one event each).

    Raises:
        Conflict: the task changed meanwhile (the caller may try again).
    """
    first = ev.task_bulk(task.id, action, new_id("b"), 0, args)
    if to is not None:
        events = [first, *task_moved(svc, task, to, reason)]
        if not svc.tasks.set_task_status(task.id, [task.status], to, reason=reason, events=events):
            raise Conflict(f"task {task.id} changed while being {action}ed; try again")
    else:
        svc.outbox.add_events([first])
    if svc.jobs.bulk_page is not None:
        return None
    return run_page(svc, TaskBulk.model_validate(first.data))


def handle(svc: Services, msg: TaskBulk) -> None:
    run_page(svc, msg)


def run_page(svc: Services, msg: TaskBulk) -> int:
    """Apply one page of the action; emit the next page's event, or finish the action.
    Returns how many jobs this page changed (also when it ran already in this process)."""
    with svc.memory.bulk_lock:
        done = svc.memory.bulk_done.get((msg.run, msg.page))
        if done is None:
            done = svc.memory.bulk_done[(msg.run, msg.page)] = _page(svc, msg)
        return done


def _page(svc: Services, msg: TaskBulk) -> int:
    task = svc.tasks.get_task(msg.task_id, counts=False)  # n_jobs as split, status as now
    page = svc.jobs.bulk_page
    first = msg.page * page if page is not None else 0
    now = svc.clock.now()
    changed = sum(
        svc.jobs.apply_bulk(bulk, now, first_index=first, count=page)
        for bulk in plan(msg.action, msg.task_id, msg.args)
    )
    log.info("task %s: %s page %d changed %d jobs", task.id, msg.action, msg.page, changed)
    if page is not None and first + page < task.n_jobs:
        nxt = ev.task_bulk(task.id, msg.action, msg.run, msg.page + 1, msg.args)
        svc.outbox.add_events([nxt])
    else:
        _after(svc, task, msg)
    return changed


def _after(svc: Services, task: Task, msg: TaskBulk) -> None:
    """What follows the action's last page (idempotent: a redelivery repeats it harmlessly)."""
    action, args = Action(msg.action), msg.args
    if action in (Action.FINISH, Action.FINISH_HARD):
        workflow.roll_up_and_advance(svc, task.id)
    elif action is Action.RESUME:
        svc.outbox.add_events(
            [ev.jobs_activated(task.spec.queue, 0, key=f"{task.id}:resume:{msg.run}")]
        )
        # Every job may have ended while it was paused: roll it up, and if that ended it, its
        # workflow goes on.
        workflow.roll_up_and_advance(svc, task.id)
    elif action is Action.MOVE and args.get("queue"):
        queue = str(args["queue"])
        svc.outbox.add_events([ev.jobs_activated(queue, 0, key=f"{task.id}:to:{queue}:{msg.run}")])
