"""release: on job.ended, roll the task up when its last job ended.

Cost per event: one indexed existence check (does any job of the task remain unended?); only
the event that finds none counts the jobs (an aggregation, once per task). No counter document
is written per job (DESIGN laws 5 and 6).
"""

from __future__ import annotations

import logging
from typing import Any

from skypanda.domain.policy import rollup
from skypanda.domain.states import TaskStatus
from skypanda.handlers.envelope import JobEnded, decode
from skypanda.handlers.services import Services

log = logging.getLogger(__name__)


def handle(svc: Services, cloud_event: Any) -> None:
    ended = decode(cloud_event, JobEnded)
    roll_up_task(svc, ended.task_id)


def roll_up_task(svc: Services, task_id: str) -> TaskStatus | None:
    """Move the task to its final state if every job has ended; return that state."""
    if svc.store.has_unended_jobs(task_id):
        return None
    task = svc.store.get_task(task_id)
    counts = svc.store.job_counts(task_id)
    final = rollup(counts, allow_partial=task.spec.allow_partial)
    if final is None:
        return None
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    if svc.store.set_task_status(
        task_id, [TaskStatus.READY, TaskStatus.RUNNING], final, reason=summary
    ):
        log.info("task %s %s (%s)", task_id, final, summary)
    return final
