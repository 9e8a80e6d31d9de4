"""split: on task.registered, cut the task into jobs and store them with the task's move to ready
(streamed: jobs are written as they are cut, never all held at once).

Idempotent: the store moves the task registered -> ready in the same transaction as the jobs,
so a second delivery finds the task ready and does nothing.
"""

from __future__ import annotations

import logging

from skypanda.domain import events as ev
from skypanda.domain.errors import InvalidInput
from skypanda.domain.events import TaskRef
from skypanda.domain.jobflow import new_job
from skypanda.domain.splitter import check_split
from skypanda.domain.splitter import split as split_task
from skypanda.domain.states import TaskStatus
from skypanda.handlers.ends import task_moved
from skypanda.handlers.services import Services

log = logging.getLogger(__name__)


def handle(svc: Services, ref: TaskRef) -> None:
    task = svc.tasks.get_task(ref.task_id)
    if task.status is not TaskStatus.REGISTERED:
        log.debug("task %s is %s: already split", task.id, task.status)
        return
    now = svc.clock.now()
    try:
        check_split(task.spec)  # what could refuse a job refuses the task, before any is made
    except InvalidInput as e:
        svc.tasks.set_task_status(
            task.id,
            [TaskStatus.REGISTERED],
            TaskStatus.FAILED,
            reason=e.message,
            events=task_moved(svc, task, TaskStatus.FAILED, e.message),
        )
        return
    # Streamed: the store writes the jobs as they are cut, so a task of a million jobs is
    # never held in memory whole (the count was made at submit).
    jobs = (new_job(task, spec, now) for spec in split_task(task.spec))
    nudge = ev.jobs_activated(task.spec.queue, task.n_jobs, key=task.id)
    if svc.tasks.add_jobs(
        task.id, jobs, expect=TaskStatus.REGISTERED, to=TaskStatus.READY,
        events=[nudge, *task_moved(svc, task, TaskStatus.READY)],
    ):  # fmt: skip
        log.info("task %s split into %d jobs", task.id, task.n_jobs)
