"""JobStore: jobs one by one (claims, reports, requeues) and task-wide bulks of them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from skypanda.domain.bulk import JobBulk
from skypanda.domain.fairshare import OwnerLoad
from skypanda.domain.jobflow import JobChange
from skypanda.domain.models import Attempt, Job, Resources
from skypanda.domain.scaling import Work
from skypanda.domain.states import JobStatus

WAITING_COUNT_CAP = 1000
"""owner_loads counts an owner's waiting jobs up to this: enough for one acquire's shares."""
OWNERS_SCANNED = 1000
"""owner_loads finds at most this many owners with jobs waiting on a queue (a handful, usually)."""


class JobStore(Protocol):
    """Jobs: read, claimed, changed compare-and-set one by one or in bulk."""

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

    def waiting_owners(self, queue: str, limit: int) -> list[str]:
        """The first `limit` owners, in name order, with jobs activated on the queue: one
        seek per owner found (so `limit=2` tells none, one or several cheaply)."""

    def owner_loads(self, queue: str) -> dict[str, OwnerLoad]:
        """For fair share: each owner with jobs live or waiting on the queue, with how many are
        live and how many wait (counted up to WAITING_COUNT_CAP). Costs a seek per owner, not a
        scan of the queue."""

    def apply_job_changes(self, changes: Sequence[JobChange]) -> list[bool]:
        """Apply compare-and-set job writes in one transaction; one result per change. A change
        wins only if the stored job still has `before`'s status, attempt and kill flag."""

    def atomic(self) -> AbstractContextManager[bool]:
        """A scope whose writes (of any aggregate of the store) commit together. It yields
        True where the store can do that (SQLite: one transaction; an exception rolls every
        write of the scope back), False where it cannot (Firestore: each write commits on its
        own). Dispatch releases a reported job's children in the scope: in the report's
        commit where it yields True, right after it where it yields False."""

    def live_jobs_of_pilot(self, pilot_id: str) -> list[Job]:
        """Jobs in a live state (sent, starting, running) held by the pilot."""

    def jobs_to_kill(self, pilot_id: str) -> list[str]:
        """Ids of the pilot's live jobs whose kill was requested."""

    def count_activated(self, queue: str) -> int: ...

    def waiting_cores(self, queue: str, capacity: Resources, limit: int) -> Work:
        """The activated jobs of `queue` that fit `capacity` (what a claim of a pilot that
        size could take), and the cores they ask for, over at most `limit` of them: the
        scaler's demand (it needs no more jobs than all its pilots could run at once). A job
        that fits no pilot of the queue is left out, so it never has pilots launched for it.
        One aggregation, never a read of each job."""

    def list_activated(self, queue: str, limit: int) -> list[Job]:
        """The queue's activated jobs in dispatch order (push mode: jobs to launch for)."""

    def apply_bulk(
        self, bulk: JobBulk, now: float, *, first_index: int = 0, count: int | None = None
    ) -> int:
        """Apply a task-wide change to the task's jobs it selects (`JobBulk.selects`), among
        those with an index in [first_index, first_index + count) (count None: all of them),
        each compare-and-set. Idempotent. Returns how many jobs changed."""

    @property
    def bulk_page(self) -> int | None:
        """How many job indexes one `apply_bulk` call should cover: None when the store
        applies a bulk to a whole task at once (one transaction), else a page size that keeps
        one call (one event, one function invocation) bounded."""


class Doorbell(Protocol):
    """Wakes the acquires that wait for work on a queue (a pilot's long-poll), within one
    server process. A ring counts per queue; a waiter names the count it saw before it last
    looked for work, so a ring between its look and its wait is not lost."""

    def seen(self, queue: str) -> int:
        """How many times the queue's bell rang so far."""

    def ring(self, queues: Mapping[str, int] | Iterable[str]) -> None:
        """Jobs were activated on these queues, how many each (or a queue named once per job;
        called after their commit): as many waiters wake, not all of the queue's."""

    def wait(self, queue: str, seen: int, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a ring of `queue` after `seen`: True when it rang
        (at once if it rang already), False at the timeout, or at once when as many waiters
        as allowed wait already (the server's threads are not all tied up by long-polls),
        or when the bell is closed (the server stops)."""
