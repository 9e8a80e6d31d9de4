"""split: on task.registered, cut the task into jobs and store them with the task's move to ready.

Idempotent: the store moves the task registered -> ready in the same transaction as the jobs,
so a second delivery finds the task ready and does nothing.
"""

from __future__ import annotations

import logging

from skypanda.domain import events as ev
from skypanda.domain.errors import InvalidInput
from skypanda.domain.events import TaskRef
from skypanda.domain.jobflow import new_job
from skypanda.domain.splitter import split as split_task
from skypanda.domain.states import TaskStatus
from skypanda.handlers.services import Services

log = logging.getLogger(__name__)


def handle(svc: Services, ref: TaskRef) -> None:
    task = svc.tasks.get_task(ref.task_id)
    if task.status is not TaskStatus.REGISTERED:
        log.debug("task %s is %s: already split", task.id, task.status)
        return
    now = svc.clock.now()
    try:
        jobs = [new_job(task, spec, now) for spec in split_task(task.spec)]
    except InvalidInput as e:
        svc.tasks.set_task_status(
            task.id, [TaskStatus.REGISTERED], TaskStatus.FAILED, reason=e.message
        )
        return
    nudge = ev.jobs_activated(task.spec.queue, len(jobs), key=task.id)
    if svc.tasks.add_jobs(
        task.id, jobs, expect=TaskStatus.REGISTERED, to=TaskStatus.READY, events=[nudge]
    ):
        log.info("task %s split into %d jobs", task.id, len(jobs))
