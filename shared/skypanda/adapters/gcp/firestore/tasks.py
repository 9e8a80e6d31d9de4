"""TaskStore on Firestore: tasks, their split into jobs (over several commits), job counts by
aggregation, and the flags a task's jobs set."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from skypanda.adapters.gcp.firestore import codec
from skypanda.adapters.gcp.firestore.base import (
    FirestoreBase,
    Tx,
    count,
    count_sum,
    eq,
    fields,
    is_in,
)
from skypanda.adapters.gcp.firestore.bulk import apply_bulk
from skypanda.adapters.gcp.firestore.plans import chunks
from skypanda.domain.bulk import JobBulk
from skypanda.domain.errors import BackendUnavailable, InvalidInput, NotFound
from skypanda.domain.events import Event
from skypanda.domain.models import Job, Task, TaskSpec
from skypanda.domain.quota import Usage
from skypanda.domain.states import (
    JOB_FINAL,
    JOB_QUEUED,
    TASK_FINAL,
    TASK_UNENDED,
    JobStatus,
    TaskStatus,
    advance,
)


class TaskPart(FirestoreBase):
    """The `tasks` collection, and the task-wide reads and writes of its jobs."""

    def add_task(self, task: Task, events: Sequence[Event]) -> None:
        ref = self._tasks.document(task.id)

        def write(tx: Tx) -> None:
            if ref.get(transaction=tx).exists:
                raise InvalidInput(f"task id {task.id} already exists", task_id=task.id)
            fresh = self._unstored(tx, events)
            tx.create(ref, codec.task_doc(task))
            self._put_events(tx, fresh)

        self._transact("add_task", write)
        if events:
            self.on_events()

    def get_task(self, task_id: str, *, counts: bool = True) -> Task:
        doc = self._read("get_task", self._tasks.document(task_id))
        if doc is None:
            raise NotFound(f"no task with id {task_id!r}", task_id=task_id)
        by_status = {str(k): v for k, v in self.job_counts(task_id).items()} if counts else {}
        return codec.task_from(task_id, doc, by_status)

    def list_tasks(self, *, limit: int = 100) -> list[Task]:
        query = self._tasks.order_by("created_at", direction=firestore.Query.DESCENDING)
        snaps = self._stream("list_tasks", query.limit(limit))
        return [codec.task_from(s.id, fields(s), {}) for s in snaps]

    def owner_usage(self, owner: str) -> Usage:
        """One aggregation (count and sum of `n_jobs`) over the (owner, status, n_jobs) index:
        billed a read per 1,000 unended tasks."""
        query = self._tasks.where(filter=eq("owner", owner))
        query = query.where(filter=is_in("status", TASK_UNENDED))
        with self._backend("owner_usage"):
            tasks, jobs = count_sum(query, "n_jobs")
        return Usage(tasks=tasks, jobs=jobs)

    def set_task_status(
        self,
        task_id: str,
        expect: Iterable[TaskStatus],
        to: TaskStatus,
        *,
        reason: str = "",
        events: Sequence[Event] = (),
    ) -> bool:
        expected = {str(s) for s in expect if advance(s, to)}
        change = {"status": str(to), "reason": reason, "updated_at": self._clock()}
        ref = self._tasks.document(task_id)
        return self._cas("set_task_status", ref, lambda d: d["status"] in expected, change, events)

    def place_task(self, task_id: str, spec: TaskSpec, events: Sequence[Event]) -> bool:
        advance(TaskStatus.PENDING, TaskStatus.REGISTERED)
        pending = str(TaskStatus.PENDING)
        change = {
            "status": str(TaskStatus.REGISTERED),
            "spec": spec.model_dump_json(by_alias=True),
            "reason": "",
            "updated_at": self._clock(),
        }
        ref = self._tasks.document(task_id)
        return self._cas("place_task", ref, lambda d: d["status"] == pending, change, events)

    def held_tasks(self, trigger_id: str, limit: int) -> list[Task]:
        query = self._tasks.where(filter=eq("waits_on", trigger_id)).where(
            filter=eq("status", str(TaskStatus.PENDING))
        )
        snaps = self._stream("held_tasks", query.order_by("created_at").limit(limit))
        return [codec.task_from(s.id, fields(s), {}) for s in snaps]

    # -- the split ---------------------------------------------------------------------------------
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
        """Split in three steps, each safe to repeat (a split may exceed one commit):

        1. check the task is in `expect` (else write nothing, return False);
        2. create the jobs, 500 per commit, never overwriting one: ids derive from (task,
           index), so a re-run after a crash creates only the missing jobs and never resets a
           job a pilot already claimed. Before each commit of jobs, the edges from their
           parents are created the same way (ids derive from (parent, child); an edge is never
           overwritten, so a re-run cannot make pending again an edge a release recorded);
        3. compare-and-set the task from `expect` to `to`, with `n_jobs` and the events.

        The task stays in `expect` until its last job is stored: a redelivered task.registered
        completes a split that crashed, and the rollup cannot end a task still being split. If
        the task ended meanwhile (aborted), the queued jobs written are cancelled (a bulk over
        the whole task, as the abort would have applied had they existed).
        See infra/FIRESTORE.md.
        """
        advance(expect, to)
        ref = self._tasks.document(task_id)

        def in_expect(d: codec.Doc | None) -> bool:
            return d is not None and d["status"] == str(expect)

        if not in_expect(self._read("add_jobs", ref)):
            return False
        # (Called with one argument when it can be: tests wrap `_create_jobs(jobs)`.)
        n = self._create_jobs(jobs, parent_status) if parent_status else self._create_jobs(jobs)
        change = {"status": str(to), "n_jobs": n, "updated_at": self._clock()}
        if self._cas("add_jobs", ref, in_expect, change, events):
            return True
        now_status = (self._read("add_jobs", ref) or {}).get("status")
        if now_status in {str(s) for s in TASK_FINAL}:
            reason = f"task {now_status} during its split"
            cancel = JobBulk(task_id, JOB_QUEUED, to=JobStatus.CANCELLED, reason=reason)
            apply_bulk(self, cancel, self._clock())
        return False

    def _create_jobs(
        self, jobs: Iterable[Job], parent_status: Mapping[str, JobStatus] | None = None
    ) -> int:
        """Create jobs, and the edges from their parents, that do not exist yet, one commit
        per chunk; return how many jobs were given.

        A chunk's edges are committed before its jobs, so a job never exists without the
        edges into it. That a parent cannot end before the edges out of it exist is the
        caller's part, on every store: a workflow's eager jobs are all stored defined, and
        their roots released (`release_roots`) once every one of them exists."""
        n = 0
        for run in chunks((job.id, codec.job_doc(job)) for job in jobs):
            n += len(run)
            edges = (
                edge
                for job_id, doc in run
                for edge in codec.job_edges(job_id, doc["parents"], parent_status or {})
            )
            for edge_run in chunks(edges):
                self._create_absent(self._edges, edge_run, probe="child")
            self._create_absent(self._jobs, run, probe="status")
        return n

    def _create_absent(
        self, collection: Any, run: list[tuple[str, codec.Doc]], *, probe: str
    ) -> None:
        """Create the documents of `run` in one commit, leaving any that exist untouched
        (`probe`: a field every document of the collection has, read to tell which exist)."""
        todo = run
        for _ in range(5):
            batch = self._db.batch()
            for doc_id, doc in todo:
                batch.create(collection.document(doc_id), doc)
            with self._backend("add_jobs"):
                try:
                    batch.commit()
                    return
                except gexc.AlreadyExists:
                    pass  # a resumed or concurrent split wrote some: create the others
                refs = [collection.document(doc_id) for doc_id, _ in todo]
                there = {s.id for s in self._db.get_all(refs, field_paths=[probe]) if s.exists}
            todo = [(doc_id, doc) for doc_id, doc in todo if doc_id not in there]
            if not todo:
                return
        raise BackendUnavailable("Firestore add_jobs: documents kept appearing while created")

    # -- the task's jobs as a whole ----------------------------------------------------------------
    def job_counts(self, task_id: str) -> dict[JobStatus, int]:
        def count_of(status: JobStatus) -> int:
            return count(self._of_task(task_id, eq("status", str(status))))

        with self._backend("job_counts"):
            counts = list(self._pool.map(count_of, JobStatus))
        return {status: n for status, n in zip(JobStatus, counts, strict=True) if n}

    def has_unended_jobs(self, task_id: str) -> bool:
        query = self._of_task(task_id, is_in("status", set(JobStatus) - JOB_FINAL))
        return bool(self._stream("has_unended_jobs", query.select([]).limit(1)))

    def count_jobs_above_memory(self, task_id: str, memory_mb: int) -> int:
        query = self._of_task(task_id, FieldFilter("memory_mb", ">", memory_mb))
        with self._backend("count_jobs_above_memory"):
            return count(query)

    def task_flags(self, task_id: str) -> dict[str, set[str]]:
        """Reads only the finished jobs that set a flag (`flagged`), and only their flags."""
        query = self._of_task(task_id, eq("status", str(JobStatus.FINISHED)), eq("flagged", True))
        out: dict[str, set[str]] = {}
        for s in self._stream("task_flags", query.select(["flags"])):
            for name, value in codec.flags_from(fields(s)).items():
                out.setdefault(name, set()).add(value)
        return out
