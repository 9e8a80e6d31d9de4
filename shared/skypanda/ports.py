"""Ports: what the handlers need from the world, as typing.Protocols.

Ports are domain-shaped (DESIGN law 4): `claim_jobs(queue, pilot, n)`, not `query(sql)`. Each
adapter uses its backend's best primitive. Every state change is compare-and-set (law 3): it
names the state it expects and returns False (or leaves the object out) when it lost.
One contract suite (tests/contract) runs against every implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from skypanda.domain.dag import ParentsState
from skypanda.domain.events import Event
from skypanda.domain.fairshare import OwnerLoad
from skypanda.domain.jobflow import JobChange
from skypanda.domain.models import Attempt, Job, Pilot, Queue, Resources, Task, TaskSpec
from skypanda.domain.states import JobStatus, PilotStatus, TaskStatus, WorkflowStatus
from skypanda.domain.workflow import Workflow

__all__ = [
    "Blobs",
    "Bus",
    "Clock",
    "JobChange",
    "LaunchedPilot",
    "Launcher",
    "Store",
    "StoredEvent",
]


WAITING_COUNT_CAP = 1000
"""owner_loads counts an owner's waiting jobs up to this: enough for one acquire's shares."""


@dataclass(frozen=True)
class StoredEvent:
    """An outbox entry: an event, and how many times delivery was tried."""

    seq: int
    event: Event
    tries: int


class Store(Protocol):
    """Tasks, jobs, queues, pilots and the outbox of events."""

    # -- tasks ---------------------------------------------------------------------------------
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

    # -- workflows -----------------------------------------------------------------------------
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
    ) -> bool:
        """Compare-and-set a workflow's status. False when it was not in `expect`."""

    def workflow_tasks(self, workflow_id: str) -> list[Task]:
        """Every task record of the workflow (every iteration of looped tasks), without counts."""

    # -- job dependencies ----------------------------------------------------------------------
    def release_children(self, parent_ids: Sequence[str]) -> dict[str, ParentsState]:
        """Record on their edges that these jobs ended (with their stored status; a parent not
        in a final state is left pending) and summarise the parents of each of their children.

        Idempotent; costs work proportional to the children, never to the workflow."""

    def release_roots(self, task_id: str, now: float) -> int:
        """Activate the task's defined jobs that have no parent at all. A workflow's eager
        tasks are stored with every job defined and their roots released once all of them
        exist, so no job can end before its children exist. Returns how many."""

    def retry_jobs(self, task_id: str, now: float) -> int:
        """A user's retry: the task's failed and cancelled jobs start a new attempt, activated,
        or defined while a parent of theirs is pending; the edges out of them become pending
        again (their children wait for the new attempt). Returns how many jobs were reset."""

    # -- jobs ----------------------------------------------------------------------------------
    def get_job(self, job_id: str) -> Job:
        """Raises NotFound."""

    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Job]:
        """The jobs that exist among `job_ids`."""

    def list_jobs(
        self, task_id: str, *, status: JobStatus | None = None, limit: int = 1000, offset: int = 0
    ) -> list[Job]:
        """Jobs of a task in index order."""

    def attempts(self, job_id: str) -> list[Attempt]:
        """Every attempt of a job, oldest first."""

    def claim_jobs(
        self,
        queue: str,
        pilot_id: str,
        n: int,
        capacity: Resources,
        now: float,
        owner: str | None = None,
    ) -> list[Job]:
        """Move up to `n` activated jobs of `queue` (of `owner`'s tasks, when given) that fit
        `capacity` to `sent` for the pilot: highest priority first, then oldest. Each job is
        claimed by at most one pilot."""

    def owner_loads(self, queue: str) -> dict[str, OwnerLoad]:
        """For fair share: each owner with jobs live or waiting on the queue, with how many are
        live and how many wait (counted up to WAITING_COUNT_CAP). Costs a seek per owner, not a
        scan of the queue."""

    def apply_job_changes(self, changes: Sequence[JobChange]) -> list[bool]:
        """Apply compare-and-set job writes in one transaction; one result per change. A change
        wins only if the stored job still has `before`'s status, attempt and kill flag."""

    def live_jobs_of_pilot(self, pilot_id: str) -> list[Job]:
        """Jobs in a live state (sent, starting, running) held by the pilot."""

    def jobs_to_kill(self, pilot_id: str) -> list[str]:
        """Ids of the pilot's live jobs whose kill was requested."""

    # -- queues --------------------------------------------------------------------------------
    def put_queue(self, queue: Queue) -> None: ...

    def get_queue(self, name: str) -> Queue:
        """Raises NotFound."""

    def list_queues(self) -> list[Queue]: ...

    def count_activated(self, queue: str) -> int: ...

    def list_activated(self, queue: str, limit: int) -> list[Job]:
        """The queue's activated jobs in dispatch order (push mode: jobs to launch for)."""

    def count_failed_pilots(self, queue: str, since: float) -> int:
        """Pilots of the queue that ended missed or failed at or after `since` (back-off)."""

    def note_scaling(self, queue: str, note: str, at: float) -> None:
        """Record the scaler's last decision on a queue and why (for `skypanda queues`)."""

    def scaling_notes(self) -> dict[str, tuple[str, float]]:
        """Each queue's last scaling decision and when it was taken."""

    # -- pilots --------------------------------------------------------------------------------
    def add_pilot(self, pilot: Pilot) -> None: ...

    def get_pilot(self, pilot_id: str) -> Pilot:
        """Raises NotFound."""

    def update_pilot(self, pilot: Pilot, expect: Iterable[PilotStatus]) -> bool:
        """Compare-and-set write of a pilot record; False when its status was not in `expect`."""

    def heartbeat(self, pilot_id: str, now: float) -> Pilot | None:
        """Record a heartbeat (only the pilot record is written) and return the pilot's record
        (what the server wants of it: e.g. `drain`); None if the pilot has ended or is unknown."""

    def list_pilots(self, *, queue: str | None = None, live: bool = False) -> list[Pilot]: ...

    def silent_pilots(self, queue: str, heard_before: float) -> list[Pilot]:
        """Live pilots of the queue not heard from (heartbeat or start) since `heard_before`."""

    # -- outbox --------------------------------------------------------------------------------
    def add_events(self, events: Sequence[Event]) -> None:
        """Append events to the outbox (ignoring ones whose id is already there)."""

    def pending_events(self, limit: int) -> list[StoredEvent]:
        """Undelivered events, oldest first."""

    def mark_delivered(self, seqs: Sequence[int], now: float) -> None: ...

    def mark_failed(self, seq: int, error: str, *, dead: bool) -> None:
        """Count a failed delivery; a dead event is parked (not redelivered) with its error."""


class Bus(Protocol):
    """Publishes events that are not tied to one stored state change (nudges, ticks)."""

    def publish(self, events: Sequence[Event]) -> None: ...


class Blobs(Protocol):
    """Logs and outputs, by key (`logs/<job>/<attempt>.log`)."""

    def append(self, key: str, data: bytes) -> None: ...

    def read(self, key: str) -> bytes:
        """Raises NotFound."""

    def uri(self, key: str) -> str: ...


@dataclass(frozen=True)
class LaunchedPilot:
    pilot_id: str
    ref: str  # the launcher's own reference (pid, execution name, pod name)
    alive: bool
    exit_code: int | None = None


class Launcher(Protocol):
    """Starts, lists and stops pilots (Harvester's submitter and monitor)."""

    def launch(self, queue: Queue, pilot_id: str, job: Job | None = None) -> str:
        """Start a pilot for `queue` that will register as `pilot_id`; return the launcher's
        reference. With `job` (push mode), the pilot is started for that job alone, with the
        job's exact memory and cores."""

    def list(self) -> list[LaunchedPilot]: ...

    def stop(self, pilot_id: str) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
