"""WorkflowStore: workflows, and the dependency edges between their jobs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from skypanda.domain.dag import ParentsState
from skypanda.domain.events import Event
from skypanda.domain.models import Task
from skypanda.domain.states import WorkflowStatus
from skypanda.domain.workflow import Workflow


class WorkflowStore(Protocol):
    """Workflows and job dependency edges (release in O(children))."""

    def add_workflow(
        self, workflow: Workflow, tasks: Sequence[Task], events: Sequence[Event]
    ) -> None:
        """Store a new workflow, its first tasks and its events in one transaction."""

    def get_workflow(self, workflow_id: str) -> Workflow:
        """Raises NotFound."""

    def list_workflows(self, *, limit: int = 100) -> list[Workflow]:
        """Most recent first."""

    def set_workflow_status(
        self,
        workflow_id: str,
        expect: Iterable[WorkflowStatus],
        to: WorkflowStatus,
        *,
        reason: str = "",
        events: Sequence[Event] = (),
    ) -> bool:
        """Compare-and-set a workflow's status, with `events` in the same commit. False (nothing
        written) when it was not in `expect`."""

    def held_workflows(self, trigger_id: str, limit: int) -> list[Workflow]:
        """Up to `limit` workflows still held by a `start_after` naming `trigger_id` (stored
        registered, without their registered event): one indexed query (`domain.chain`)."""

    def end_hold(
        self,
        workflow_id: str,
        to: WorkflowStatus,
        *,
        reason: str = "",
        events: Sequence[Event] = (),
    ) -> bool:
        """A held workflow stops waiting: it stays `registered` (to start: its registered event
        in `events`) or ends (`skipped`: never started), with `events` in the same commit.
        Compare-and-set on it still being held (registered and waiting); False (nothing
        written) when it was not: killed, or settled already by a redelivered end."""

    def workflow_tasks(self, workflow_id: str) -> list[Task]:
        """Every task record of the workflow (every iteration of looped tasks), without counts."""

    def release_children(self, parent_ids: Sequence[str]) -> dict[str, ParentsState]:
        """Record on their edges that these jobs ended (with their stored status; a parent not
        in a final state is left pending) and summarise the parents of each of their children.

        Idempotent; costs work proportional to the children, never to the workflow."""

    def release_roots(self, task_id: str, now: float) -> int:
        """Activate the task's defined jobs that have no parent at all. A workflow's graph
        tasks are stored with every job defined and their roots released once all of them
        exist, so no job can end before its children exist (other eager tasks are made
        children first, their roots activated as they are stored). Returns how many."""

    def retry_jobs(self, task_id: str, now: float) -> int:
        """A user's retry: the task's failed and cancelled jobs start a new attempt, activated,
        or defined while a parent of theirs is pending; the edges out of them become pending
        again (their children wait for the new attempt). Returns how many jobs were reset."""
