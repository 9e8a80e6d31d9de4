"""TaskStore: tasks, their split into jobs, and what their jobs add up to (counts, flags).

Task-wide changes of jobs (kill, finish, pause, ...) are `JobStore.apply_bulk` of the bulks
`domain.bulk.plan` decides."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from skypanda.domain.events import Event
from skypanda.domain.models import Job, Task, TaskSpec
from skypanda.domain.quota import Usage
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

    def owner_usage(self, owner: str) -> Usage:
        """The owner's tasks not in a final state, and their jobs (the sum of their `n_jobs`):
        one aggregation over the (owner, status) index (`domain.quota`)."""

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

    def place_task(self, task_id: str, spec: TaskSpec, events: Sequence[Event]) -> bool:
        """A pending task was brokered: move it to registered with its spec (now naming its
        queue), clear its reason and emit `events`, compare-and-set on the task still being
        pending. False (nothing written) when it was not."""

    def held_tasks(self, trigger_id: str, limit: int) -> list[Task]:
        """Up to `limit` tasks still held (pending) by a `start_after` naming `trigger_id`:
        one indexed query (`domain.chain`). A held task leaves it when it is started
        (`place_task`), skipped or killed."""

    def count_jobs_above_memory(self, task_id: str, memory_mb: int) -> int:
        """How many of the task's jobs ask for more than `memory_mb` (raised by retry rules)."""

    def task_flags(self, task_id: str) -> dict[str, set[str]]:
        """Flags set by the task's finished jobs: name -> the values set."""
