"""A task's rollup: once every job of it has ended, the task takes its final state.

One indexed existence check per call while jobs remain; when none is left, the task is read
and its jobs counted (aggregations, once per task), and the task moves compare-and-set, so
concurrent or repeated rollups agree. Tasks seen ended for good are remembered (services
Memory), sparing the events that arrive after the end any read.
"""

from __future__ import annotations

import logging

from skypanda.domain.policy import rollup
from skypanda.domain.states import TaskStatus
from skypanda.handlers.ends import task_moved
from skypanda.handlers.services import Services

log = logging.getLogger(__name__)

# A state that never changes once reached. Failed and aborted tasks are not remembered: a user
# may retry them (and another process, which did not see the retry, would miss its end).
_FOR_GOOD = frozenset({TaskStatus.DONE, TaskStatus.FINISHED})


def _remember(svc: Services, task_id: str, status: TaskStatus) -> TaskStatus:
    if status in _FOR_GOOD:
        svc.memory.ended[task_id] = status
    return status


def forget(svc: Services, task_id: str) -> None:
    """Drop what this process remembers of a task's end (before a retry)."""
    svc.memory.ended.pop(task_id, None)


def roll_up_task(svc: Services, task_id: str) -> TaskStatus | None:
    """Move the task to its final state if every job has ended; return that state."""
    return roll_up_task_fresh(svc, task_id)[0]


def roll_up_task_fresh(svc: Services, task_id: str) -> tuple[TaskStatus | None, bool]:
    """Like roll_up_task; also says whether this process learnt of the end just now (so the
    workflow should be advanced: after a crash, a redelivered event does it again)."""
    ended = svc.memory.ended.get(task_id)
    if ended is not None:
        return ended, False
    if svc.tasks.has_unended_jobs(task_id):
        return None, False
    task = svc.tasks.get_task(task_id, counts=False)
    if task.status in (TaskStatus.REGISTERED, TaskStatus.PAUSED):
        return None, False  # not made yet; or paused (its resume rolls it up)
    if task.status not in (TaskStatus.READY, TaskStatus.RUNNING):
        return _remember(svc, task_id, task.status), True  # rolled up already by another event
    counts = svc.tasks.job_counts(task_id)
    final = rollup(counts, allow_partial=task.spec.allow_partial)
    if final is None:
        return None, False
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    if svc.tasks.set_task_status(
        task_id,
        [TaskStatus.READY, TaskStatus.RUNNING],
        final,
        reason=summary,
        events=task_moved(svc, task, final, summary),
    ):
        log.info("task %s %s (%s)", task_id, final, summary)
    return _remember(svc, task_id, final), True
