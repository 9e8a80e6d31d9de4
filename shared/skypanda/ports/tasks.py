"""TaskStore: tasks, their split into jobs, and what is asked of a task's jobs as a whole."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from skypanda.domain.events import Event
from skypanda.domain.models import Job, Task, TaskSpec
from skypanda.domain.states import JobStatus, TaskStatus


class TaskStore(Protocol):
    """Tasks: stored, read, moved compare-and-set, split into jobs, counted."""

    def add_task(self, task: Task, events: Sequence[Event]) -> None:
        """Store a new task (its id must be new) and its events in one transaction."""

    def get_task(self, task_id: str, *, counts: bool = True) -> Task:
        """The task, with its `job_counts` filled unless `counts` is False (counting costs an
        aggregation per job state). Raises NotFound."""

    def list_tasks(self, *, limit: int = 100) -> list[Task]:
        """Most recent first."""

    def set_task_status(
        self,
        task_id: str,
        expect: Iterable[TaskStatus],
        to: TaskStatus,
        *,
        reason: str = "",
        events: Sequence[Event] = (),
    ) -> bool:
        """Compare-and-set a task's status. False when the task was not in `expect`."""

    def add_jobs(
        self,
        task_id: str,
        jobs: Iterable[Job],
        *,
        expect: TaskStatus,
        to: TaskStatus,
        events: Sequence[Event] = (),
        parent_status: Mapping[str, JobStatus] | None = None,
    ) -> bool:
        """Split: store a task's jobs and move the task from `expect` to `to`, atomically.

        A job's `parents` become dependency edges, recorded as pending, or as ended with the
        status `parent_status` gives (a task made after its parents ended).
        False (nothing written) when the task was no longer in `expect`. Job ids are derived
        from (task, index), so a repeated split cannot create duplicates. (On Firestore a
        big split is written in batches: see that adapter for how a crash mid-way resumes.)"""

    def job_counts(self, task_id: str) -> dict[JobStatus, int]:
        """Jobs of a task counted by status (an aggregation, not a stored counter)."""

    def has_unended_jobs(self, task_id: str) -> bool:
        """Whether any job of the task is not yet in a final state (cheap: stops at the first)."""

    def abort_task(self, task_id: str, reason: str) -> Task:
        """Kill a task: task -> aborted, its queued jobs -> cancelled, its live jobs flagged for
        their pilots to kill. Raises NotFound; IllegalTransition if the task already ended."""

    def place_task(self, task_id: str, spec: TaskSpec, events: Sequence[Event]) -> bool:
        """A pending task was brokered: store its spec (now naming its queue), clear its reason
        and emit `events`, compare-and-set on the task still being registered."""

    def count_jobs_above_memory(self, task_id: str, memory_mb: int) -> int:
        """How many of the task's jobs ask for more than `memory_mb` (raised by retry rules)."""

    def raise_queued_memory(self, task_id: str, memory_mb: int) -> int:
        """The task's queued jobs that ask for less than `memory_mb` ask for it. Returns how
        many changed."""

    def pause_jobs(self, task_id: str) -> int:
        """A paused task's activated jobs go back to defined (no pilot takes them). Returns
        how many."""

    def resume_jobs(self, task_id: str) -> int:
        """A resumed task's defined jobs that wait for no parent (none pending) are activated.
        Returns how many."""

    def finish_task(self, task_id: str, reason: str, *, hard: bool) -> int:
        """JEDI's finish: close the task's queued (defined, activated) jobs, which will never
        run; with `hard`, also flag its live jobs for their pilots to kill. The task then rolls
        up from its jobs. Returns how many jobs were closed."""

    def reassign_jobs(self, task_id: str, *, queue: str | None, priority: int | None) -> int:
        """Move the task's queued jobs to `queue` and/or give them `priority` (None: keep).
        Returns how many jobs changed."""

    def task_flags(self, task_id: str) -> dict[str, set[str]]:
        """Flags set by the task's finished jobs: name -> the values set."""
