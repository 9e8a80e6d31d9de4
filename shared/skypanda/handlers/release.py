"""release: on job.ended, roll the task up when its last job ended.

Cost per event: one indexed existence check (does any job of the task remain unended?); an
event that finds none reads the task, and only if the task has not ended yet are its jobs
counted (aggregations, once per task). No counter document
is written per job (DESIGN laws 5 and 6).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from skypanda.domain.policy import rollup
from skypanda.domain.states import TASK_FINAL, TaskStatus
from skypanda.handlers.envelope import JobEnded, decode
from skypanda.handlers.services import Services

log = logging.getLogger(__name__)


def handle(svc: Services, cloud_event: Any) -> None:
    ended = decode(cloud_event, JobEnded)
    roll_up_task(svc, ended.task_id)


# Tasks this process saw ended. A final state never changes, so the cache cannot go stale; it
# spares the events that arrive after their task's rollup any read (a function instance
# serves many events in a row). Bounded: the oldest entries go first.
_ENDED: OrderedDict[str, TaskStatus] = OrderedDict()
_ENDED_MAX = 10_000


def _remember(task_id: str, status: TaskStatus) -> TaskStatus:
    _ENDED[task_id] = status
    while len(_ENDED) > _ENDED_MAX:
        _ENDED.popitem(last=False)
    return status


def roll_up_task(svc: Services, task_id: str) -> TaskStatus | None:
    """Move the task to its final state if every job has ended; return that state."""
    if task_id in _ENDED:
        return _ENDED[task_id]
    if svc.store.has_unended_jobs(task_id):
        return None
    task = svc.store.get_task(task_id, counts=False)
    if task.status in TASK_FINAL:
        return _remember(task_id, task.status)  # rolled up already by another event
    counts = svc.store.job_counts(task_id)
    final = rollup(counts, allow_partial=task.spec.allow_partial)
    if final is None:
        return None
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    if svc.store.set_task_status(
        task_id, [TaskStatus.READY, TaskStatus.RUNNING], final, reason=summary
    ):
        log.info("task %s %s (%s)", task_id, final, summary)
        return _remember(task_id, final)
    return final
