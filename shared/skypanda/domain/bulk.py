"""Task-wide job changes, decided once here and applied by every store the same way.

A task action (kill, finish, pause, resume, reassign, priority) changes many jobs of one task:
each such change is a `JobBulk`, a value saying which jobs it selects (by state, and for some
by a field) and what it writes. A store applies it with its own best primitive (SQLite: one
`UPDATE ... WHERE`; Firestore: compare-and-set writes over a range of job indexes, one page
per event), but neither decides anything: `selects` and `changes` are the whole rule.

An action is a short sequence of bulks (`plan`). Applying a bulk twice changes nothing the
second time (a changed job is no longer selected), so pages can be redelivered, and a crash
part way is resumed by delivering the same page again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import Job
from skypanda.domain.states import JOB_FINAL, JOB_LIVE, JOB_QUEUED, JobStatus, advance

__all__ = ["Action", "JobBulk", "plan"]


@dataclass(frozen=True)
class JobBulk:
    """One change to the jobs of a task.

    Selects the task's jobs whose status is in `select` and that the change would alter
    (a job that already asks for `memory_mb` or more, is already on `queue` with `priority`,
    or already has its kill flag, is not selected); with `unblocked_only`, only jobs none of
    whose parents is pending. Writes `to` (checked against the job state machine when the bulk
    is made), `reason` as the diagnosis, `ended_at` when `to` is final, the kill flag, the
    queue, the priority or the memory.

    Raises:
        IllegalTransition: `to` cannot follow one of the `select` states.
        InvalidInput: the bulk would change nothing.
    """

    task_id: str
    select: frozenset[JobStatus]
    to: JobStatus | None = None
    reason: str | None = None
    kill: bool = False
    queue: str | None = None
    priority: int | None = None
    memory_mb: int | None = None
    unblocked_only: bool = False

    def __post_init__(self) -> None:
        if self.to is not None:
            for status in self.select:
                advance(status, self.to)
        if self.to is None and not (
            self.kill
            or self.queue is not None
            or self.priority is not None
            or self.memory_mb is not None
        ):
            raise InvalidInput("a job bulk must change something")

    @property
    def ends(self) -> bool:
        return self.to is not None and self.to in JOB_FINAL

    def selects(self, job: Job, *, parent_pending: bool = False) -> bool:
        """Whether the bulk changes `job` (`parent_pending`: some parent of it is pending)."""
        if job.task_id != self.task_id or job.status not in self.select:
            return False
        if self.unblocked_only and parent_pending:
            return False
        if self.to is not None:
            return True
        return (
            (self.kill and not job.kill_requested)
            or (self.queue is not None and job.queue != self.queue)
            or (self.priority is not None and job.priority != self.priority)
            or (self.memory_mb is not None and job.resources.memory_mb < self.memory_mb)
        )

    def changes(self, job: Job, now: float) -> dict[str, Any]:
        """The fields of `job` the bulk writes, by `Job` field name (`memory_mb`: the memory
        of its resources), with their new values; `updated_at` always."""
        out: dict[str, Any] = {"updated_at": now}
        if self.to is not None:
            out["status"] = self.to
        if self.reason is not None:
            out["error_diag"] = self.reason
        if self.ends:
            out["ended_at"] = now
        if self.kill:
            out["kill_requested"] = True
        if self.queue is not None:
            out["queue"] = self.queue
        if self.priority is not None:
            out["priority"] = self.priority
        if self.memory_mb is not None and job.resources.memory_mb < self.memory_mb:
            out["memory_mb"] = self.memory_mb
        return out

    def apply(self, job: Job, now: float) -> Job:
        """`job` as the bulk leaves it (unchanged if not selected; parents not considered)."""
        if not self.selects(job):
            return job
        changes = self.changes(job, now)
        memory = changes.pop("memory_mb", None)
        if memory is not None:
            changes["resources"] = job.resources.model_copy(update={"memory_mb": memory})
        return job.model_copy(update=changes)


class Action(StrEnum):
    """Task-wide actions that run as bulks (one `task.bulk` event per page)."""

    KILL = "kill"
    FINISH = "finish"
    FINISH_HARD = "finish-hard"
    PAUSE = "pause"
    RESUME = "resume"
    MOVE = "move"  # reassign and/or priority
    RAISE_MEMORY = "raise-memory"


def plan(action: Action | str, task_id: str, args: dict[str, Any]) -> tuple[JobBulk, ...]:
    """The bulks an action applies, in order.

    Raises:
        InvalidInput: unknown action, or arguments it cannot use.
    """
    try:
        act = Action(action)
    except ValueError as e:
        raise InvalidInput(f"unknown task action {action!r}") from e
    reason = str(args.get("reason", ""))
    kill_live = JobBulk(task_id, JOB_LIVE, kill=True)
    if act is Action.KILL:
        return (JobBulk(task_id, JOB_QUEUED, to=JobStatus.CANCELLED, reason=reason), kill_live)
    if act in (Action.FINISH, Action.FINISH_HARD):
        close = JobBulk(task_id, JOB_QUEUED, to=JobStatus.CLOSED, reason=reason)
        return (close, kill_live) if act is Action.FINISH_HARD else (close,)
    if act is Action.PAUSE:
        return (JobBulk(task_id, frozenset({JobStatus.ACTIVATED}), to=JobStatus.DEFINED),)
    if act is Action.RESUME:
        defined = frozenset({JobStatus.DEFINED})
        return (JobBulk(task_id, defined, to=JobStatus.ACTIVATED, unblocked_only=True),)
    if act is Action.MOVE:
        queue, priority = args.get("queue"), args.get("priority")
        return (
            JobBulk(
                task_id,
                JOB_QUEUED,
                queue=None if queue is None else str(queue),
                priority=None if priority is None else int(priority),
            ),
        )
    return (JobBulk(task_id, JOB_QUEUED, memory_mb=int(args["memory_mb"])),)
