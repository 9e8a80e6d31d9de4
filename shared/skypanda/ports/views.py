"""Views: the read side people look at (the monitor, `skypanda tasks`, `/metrics`).

Every list is a page read along an index, newest first, with an opaque cursor for the next
page: no call scans a table or a whole task. Aggregates (an error summary, a histogram) read
one task's jobs by an index, or a bounded time window; the embedded store answers each in well
under 300 ms at a million jobs (`skypanda bench monitor`). Read-only: nothing here changes state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from skypanda.domain.fleet import Pilot
from skypanda.domain.records import Job, Task
from skypanda.domain.states import JobStatus, PilotStatus, TaskStatus, WorkflowStatus
from skypanda.domain.workflow import Workflow

T = TypeVar("T")

MAX_PAGE = 500
"""The most items one page returns (a caller asking for more gets this many)."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    cursor: str | None = None  # pass back for the next page; None: this was the last


@dataclass(frozen=True)
class TaskQuery:
    owner: str | None = None  # None: everyone's (the API lets only admins ask so)
    statuses: frozenset[TaskStatus] = frozenset()  # empty: any
    name_prefix: str = ""
    since: float | None = None  # created at or after
    until: float | None = None  # created before
    workflow_id: str | None = None


@dataclass(frozen=True)
class WorkflowQuery:
    owner: str | None = None
    statuses: frozenset[WorkflowStatus] = frozenset()
    name_prefix: str = ""
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True)
class JobQuery:
    statuses: frozenset[JobStatus] = frozenset()
    error_code: int | None = None


@dataclass(frozen=True)
class ErrorCount:
    """Jobs of a task that ended with one error code (BigPanDA's error summary row)."""

    error_code: int
    count: int
    diag: str  # one diagnosis seen with this code (the most recent)
    example_job: str  # a job with this code, to open


@dataclass(frozen=True)
class Bucket:
    """A count in a time bucket [start, start + width) or a value bucket."""

    start: float
    count: int
    label: str = ""  # e.g. a status or an error code, when one series of several


@dataclass(frozen=True)
class MemoryPoint:
    job_id: str
    requested_mb: int
    used_mb: int


@dataclass(frozen=True)
class QueueView:
    queue: str
    activated: int  # jobs waiting to be dispatched there
    pilots: dict[PilotStatus, int] = field(default_factory=dict)
    scaler_note: str = ""  # the scaler's last decision and why
    scaler_note_at: float | None = None


class Views(Protocol):
    def task_page(self, query: TaskQuery, *, cursor: str | None, limit: int) -> Page[Task]:
        """Tasks matching `query`, newest first (job counts not filled)."""

    def workflow_page(
        self, query: WorkflowQuery, *, cursor: str | None, limit: int
    ) -> Page[Workflow]:
        """Workflows matching `query`, newest first."""

    def job_page(
        self, task_id: str, query: JobQuery, *, cursor: str | None, limit: int
    ) -> Page[Job]:
        """Jobs of a task in index order, filtered by state and error code."""

    def error_summary(self, task_id: str, *, limit: int = 50) -> list[ErrorCount]:
        """Failed (and failed-attempt) jobs of a task by error code, most frequent first."""

    def ended_per_minute(
        self, *, since: float, task_id: str | None = None, owner: str | None = None
    ) -> list[Bucket]:
        """Jobs that ended at or after `since`, per minute (start = the minute), one series per
        final status (label = the status). Bounded: `since` at most a day back."""

    def failures_by_code(
        self, *, since: float, owner: str | None = None, limit: int = 20
    ) -> list[Bucket]:
        """Jobs failed at or after `since` by error code (label = the code), most first."""

    def duration_histogram(self, task_id: str) -> list[Bucket]:
        """Finished jobs' run times (ended - started) in log-spaced buckets (start = the
        bucket's lower bound in seconds)."""

    def memory_use(self, task_id: str, *, limit: int = 1000) -> list[MemoryPoint]:
        """Peak memory used (reported by the pilot) against requested, for up to `limit` of a
        task's ended jobs."""

    def state_timeline(self, task_id: str, *, points: int = 60) -> list[dict[str, int]]:
        """Job counts by state at `points` evenly spaced moments from the task's creation to
        now (or its end): each dict has key "t" (seconds since the epoch) and one per state."""

    def queue_views(self) -> list[QueueView]:
        """Every queue: activated jobs, pilots by state, the scaler's last note."""

    def pilot_page(
        self,
        *,
        queue: str | None = None,
        statuses: Sequence[PilotStatus] = (),
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[Pilot]:
        """Pilots, newest first."""
