"""The Store port on Firestore (native mode).

Collections (`{prefix}tasks`, `jobs`, `attempts`, `queues`, `pilots`, `events`, `workflows`,
`edges`), fields and indexes are described in infra/FIRESTORE.md. How each promise of the port
is kept:

- Compare-and-set (DESIGN law 3) of one document reads it, checks its status, and commits with
  a "not updated since read" precondition (no locks; see `_cas`). Job changes, which touch
  several documents, commit the same way against the job versions this store last read (a
  pilot's report reads its jobs just before), else in a transaction (`apply_job_changes`).
  A lost compare-and-set returns False.
- Claims (law 4) query a small window of candidates in dispatch order, then commit the picks
  with a "not updated since read" precondition on each: a compare-and-set on the document
  version that takes no locks. The first picks are the head of the window (exact dispatch
  order for a lone pilot); after a lost race, a random sample of a wider window.
- No hot documents (law 5): job counts are aggregation queries, nothing is written per job but
  the job's own documents, and outbox sequence numbers come from the clock, not a counter.
- Events go to `{prefix}events` in the same commit as the change that caused them; an id that
  is already there is skipped, so adding an event is idempotent.
- Billed operations per job are kept low (infra/FIRESTORE.md has the budget): a claim writes
  only the job, a live attempt's record lives in the job document until the attempt ends,
  and a pilot's report is committed without reading its jobs a second time.
- Job dependencies (law 6) are `edges` documents, one per (parent, child), found by parent
  (to record that a parent ended) and by child (to check a child's parents, with queries that
  stop at the first pending edge and at the third failed parent): a release costs work
  proportional to the children, never to the workflow (`release_children`).

Every function given to `_transact` may run more than once (the client re-runs it when the
commit aborts on contention): it only reads and writes through the transaction and returns a
value; anything else (calling `on_events`, cleanup) happens after the commit.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch
from google.cloud.firestore_v1.field_path import FieldPath

from skypanda.adapters.gcp import firestore_codec as codec
from skypanda.adapters.gcp import metering
from skypanda.domain.dag import ParentsState
from skypanda.domain.errors import BackendUnavailable, Conflict, InvalidInput, NotFound
from skypanda.domain.events import Event
from skypanda.domain.fairshare import OwnerLoad
from skypanda.domain.models import Attempt, Job, Pilot, Queue, Resources, Task, TaskSpec
from skypanda.domain.states import (
    JOB_FINAL,
    JOB_LIVE,
    JOB_QUEUED,
    PILOT_FINAL,
    PILOT_LIVE,
    TASK_FINAL,
    JobStatus,
    PilotStatus,
    TaskStatus,
    WorkflowStatus,
    advance,
)
from skypanda.domain.workflow import Workflow
from skypanda.ports import WAITING_COUNT_CAP, JobChange, StoredEvent

T = TypeVar("T")
Tx = Any  # google.cloud.firestore.Transaction
Snapshot = codec.Snapshot

CLAIM_ROUNDS = 32  # claim commits per call at most (each may follow a query of candidates)
CAS_ROUNDS = 20  # compare-and-set commits per call at most, while the document keeps changing
VERSIONS = 20_000  # job versions remembered for job changes without a read (a few MB)
_ACTIVATED = str(JobStatus.ACTIVATED)
_BY_ID = FieldPath.document_id()
_eq, _in, _fields = codec.eq, codec.is_in, codec.fields


def _where(query: Any, *filters: FieldFilter | None) -> Any:
    """`query` narrowed by each of `filters` (None: no filter)."""
    for f in filters:
        query = query if f is None else query.where(filter=f)
    return query


def _count(query: Any) -> int:
    """Run a count() aggregation over `query` (billed per 1000 index entries counted)."""
    result = query.count().get()
    return int(result[0][0].value)


class FirestoreStore:
    """Store port on Firestore. `on_events` is called after a commit that wrote outbox events.

    The store owns `client` from here on: `close()` closes it.
    """

    def __init__(
        self, client: firestore.Client, *, clock: Callable[[], float], prefix: str = ""
    ) -> None:
        self._db = client
        self._clock = clock
        self.prefix = prefix
        self._tasks = client.collection(f"{prefix}tasks")
        self._jobs = client.collection(f"{prefix}jobs")
        self._attempts = client.collection(f"{prefix}attempts")
        self._queues = client.collection(f"{prefix}queues")
        self._pilots = client.collection(f"{prefix}pilots")
        self._events = client.collection(f"{prefix}events")
        self._workflows = client.collection(f"{prefix}workflows")
        self._edges = client.collection(f"{prefix}edges")
        self._scaler = client.collection(f"{prefix}scaler")
        self._pool = ThreadPoolExecutor(max_workers=len(JobStatus), thread_name_prefix="fs-query")
        self.on_events: Callable[[], None] = lambda: None
        self.claim_stats: Counter[str] = Counter()  # claim commits tried, and lost to a race
        self._stats_lock = threading.Lock()
        # job id -> (update time, status, attempt) of the job as this store last read or
        # wrote it: what `apply_job_changes` commits against without reading the job again.
        self._versions: OrderedDict[str, tuple[Any, str, int]] = OrderedDict()
        self._versions_lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------------
    @contextmanager
    def _backend(self, what: str) -> Iterator[None]:
        """Map the client library's errors to BackendUnavailable (retryable); attribute the
        operations inside to `what` for metering."""
        try:
            with metering.operation(what):
                yield
        except gexc.GoogleAPIError as e:
            raise BackendUnavailable(f"Firestore {what} failed: {e}") from e

    def _transact(self, what: str, fn: Callable[[Tx], T]) -> T:
        """Run `fn(transaction)` in a transaction, committing after it returns.

        `fn` may be run several times (see the module docstring). A fresh `_Transactional` is
        made per call: it keeps per-call retry state, so one instance cannot serve two threads.

        Raises:
            BackendUnavailable: Firestore failed, or the commit kept aborting on contention.
        """
        with self._backend(what):
            try:
                run = firestore.transactional(fn)
                return run(self._db.transaction())  # type: ignore[no-any-return]
            except gexc.Aborted as e:
                raise BackendUnavailable(f"Firestore {what}: contention, try again") from e
            except ValueError as e:  # the client's "Failed to commit transaction in N attempts"
                if isinstance(e.__cause__, gexc.Aborted):
                    raise BackendUnavailable(f"Firestore {what}: contention, try again") from e
                raise

    def _cas(
        self,
        what: str,
        ref: Any,
        ok: Callable[[codec.Doc], bool],
        change: codec.Doc,
        events: Sequence[Event] = (),
    ) -> bool:
        """Compare-and-set one document: if it exists and `ok(its fields)`, apply `change` and
        add `events`, in one commit. Whether it won.

        Optimistic, like claims: read without a transaction, then commit with the precondition
        "not updated since read"; if another writer got in between, read again and re-check.
        Transactions would lock the document on read, and every heartbeat, report or sweep
        touching it would queue behind the lock (on the emulator, about 2 s per collision).
        """
        for _ in range(CAS_ROUNDS):
            with self._backend(what):
                snap = ref.get()
            if not snap.exists or not ok(_fields(snap)):
                return False
            fresh = self._absent_events(what, events)
            batch = self._db.batch()
            batch.update(
                ref, change, option=self._db.write_option(last_update_time=snap.update_time)
            )
            now = self._clock()
            for e in fresh:
                batch.create(
                    self._events.document(e.id), codec.event_doc(e, codec.SEQS.next(), now)
                )
            with self._backend(what):
                try:
                    batch.commit()
                except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Conflict):
                    continue  # changed since read, or an event landed meanwhile: look again
            if events:
                self.on_events()
            return True
        raise BackendUnavailable(f"Firestore {what}: document kept changing, try again")

    def _absent_events(self, what: str, events: Sequence[Event]) -> list[Event]:
        """The events (deduplicated) whose id is not in the outbox yet (a plain read)."""
        unique = list({e.id: e for e in events}.values())
        if not unique:
            return []
        stored = {s.id for s in self._get_all(what, [self._events.document(e.id) for e in unique])}
        return [e for e in unique if e.id not in stored]

    def _of_task(self, task_id: str, *filters: FieldFilter | None) -> Any:
        """The query of a task's jobs that pass `filters`."""
        return _where(self._jobs, _eq("task_id", task_id), *filters)

    def _read(self, what: str, ref: Any) -> codec.Doc | None:
        with self._backend(what):
            snap = ref.get()
        return _fields(snap) if snap.exists else None

    def _stream(self, what: str, query: Any) -> list[Snapshot]:
        with self._backend(what):
            return list(query.stream())

    def _get_all(self, what: str, refs: Sequence[Any], tx: Tx | None = None) -> list[Snapshot]:
        with self._backend(what):
            return [s for s in self._db.get_all(list(refs), transaction=tx) if s.exists]

    def _unstored(self, tx: Tx, events: Sequence[Event]) -> list[Event]:
        """Transaction read: the events (deduplicated) whose id is not in the outbox yet."""
        unique = list({e.id: e for e in events}.values())
        if not unique:
            return []
        refs = [self._events.document(e.id) for e in unique]
        stored = {s.id for s in self._db.get_all(refs, transaction=tx) if s.exists}
        return [e for e in unique if e.id not in stored]

    def _put_events(self, tx: Tx, events: Sequence[Event]) -> None:
        """Transaction write of events `_unstored` returned (after every read of `tx`)."""
        now = self._clock()
        for e in events:
            tx.create(self._events.document(e.id), codec.event_doc(e, codec.SEQS.next(), now))

    def _remember(self, job_id: str, update_time: Any, status: str, attempt: int) -> None:
        """Remember a job's version (unless a later one is remembered), the oldest forgotten."""
        with self._versions_lock:
            known = self._versions.get(job_id)
            if known is not None and known[0] > update_time:
                return
            self._versions[job_id] = (update_time, status, attempt)
            self._versions.move_to_end(job_id)
            while len(self._versions) > VERSIONS:
                self._versions.popitem(last=False)

    def _remember_read(self, snaps: Iterable[Snapshot]) -> None:
        for snap in snaps:
            self._remember(snap.id, snap.update_time, snap.get("status"), snap.get("attempt"))

    def _forget(self, job_ids: Iterable[str]) -> None:
        with self._versions_lock:
            for job_id in job_ids:
                self._versions.pop(job_id, None)

    def _remembered(self, job_ids: Iterable[str]) -> dict[str, tuple[Any, str, int]] | None:
        """The remembered versions of all of `job_ids`, or None if one is not remembered."""
        with self._versions_lock:
            found = {i: self._versions.get(i) for i in job_ids}
        known = {i: v for i, v in found.items() if v is not None}
        return known if len(known) == len(found) else None

    def collection(self, name: str) -> str:
        """The full name of one of the store's collections (`events` -> `{prefix}events`)."""
        return f"{self.prefix}{name}"

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._db.close()  # type: ignore[no-untyped-call]

    # -- tasks ----------------------------------------------------------------------------------
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
        return [codec.task_from(s.id, _fields(s), {}) for s in snaps]

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
        the task ended meanwhile (aborted), the jobs written are cancelled.
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
            self._cancel_queued(task_id, f"task {now_status} during its split", self._clock())
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
        for run in codec.chunks((job.id, codec.job_doc(job)) for job in jobs):
            n += len(run)
            edges = (
                edge
                for job_id, doc in run
                for edge in codec.job_edges(job_id, doc["parents"], parent_status or {})
            )
            for edge_run in codec.chunks(edges):
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

    def job_counts(self, task_id: str) -> dict[JobStatus, int]:
        def count(status: JobStatus) -> int:
            return _count(self._of_task(task_id, _eq("status", str(status))))

        with self._backend("job_counts"):
            counts = list(self._pool.map(count, JobStatus))
        return {status: n for status, n in zip(JobStatus, counts, strict=True) if n}

    def has_unended_jobs(self, task_id: str) -> bool:
        query = self._of_task(task_id, _in("status", set(JobStatus) - JOB_FINAL))
        return bool(self._stream("has_unended_jobs", query.select([]).limit(1)))

    def abort_task(self, task_id: str, reason: str) -> Task:
        task = self.get_task(task_id)
        advance(task.status, TaskStatus.ABORTED)
        now = self._clock()
        change = {"status": str(TaskStatus.ABORTED), "reason": reason, "updated_at": now}
        ref = self._tasks.document(task_id)
        if not self._cas("abort_task", ref, lambda d: d["status"] == str(task.status), change):
            raise Conflict(f"task {task_id} changed while being killed; try again")
        self._cancel_queued(task_id, reason, now)
        self._flag_live(task_id, now)
        return self.get_task(task_id)

    def place_task(self, task_id: str, spec: TaskSpec, events: Sequence[Event]) -> bool:
        registered = str(TaskStatus.REGISTERED)
        change = {
            "spec": spec.model_dump_json(by_alias=True),
            "reason": "",
            "updated_at": self._clock(),
        }
        ref = self._tasks.document(task_id)
        return self._cas("place_task", ref, lambda d: d["status"] == registered, change, events)

    def count_jobs_above_memory(self, task_id: str, memory_mb: int) -> int:
        query = self._of_task(task_id, FieldFilter("memory_mb", ">", memory_mb))
        with self._backend("count_jobs_above_memory"):
            return _count(query)

    def raise_queued_memory(self, task_id: str, memory_mb: int) -> int:
        queued = {str(s) for s in JOB_QUEUED}
        query = self._of_task(
            task_id, _in("status", queued), FieldFilter("memory_mb", "<", memory_mb)
        )
        change = {"memory_mb": memory_mb, "updated_at": self._clock()}

        def still(d: codec.Doc) -> bool:
            return d["status"] in queued and int(d["memory_mb"]) < memory_mb

        return self._update_all("raise_queued_memory", query, still, change)

    def pause_jobs(self, task_id: str) -> int:
        advance(JobStatus.ACTIVATED, JobStatus.DEFINED)
        query = self._of_task(task_id, _eq("status", _ACTIVATED))
        change = {"status": str(JobStatus.DEFINED), "updated_at": self._clock()}
        return self._update_all("pause_jobs", query, lambda d: d["status"] == _ACTIVATED, change)

    def resume_jobs(self, task_id: str) -> int:
        """Each defined job is checked for a pending edge (a limit-1 query): a user's action,
        so its cost grows with the task, once."""
        advance(JobStatus.DEFINED, JobStatus.ACTIVATED)
        defined = str(JobStatus.DEFINED)
        waiting = self._stream(
            "resume_jobs", self._of_task(task_id, _eq("status", defined)).select([])
        )

        def pending(job_id: str) -> bool:
            query = _where(self._edges, _eq("child", job_id), _eq("parent_status", None))
            return bool(self._stream("resume_jobs", query.select([]).limit(1)))

        with self._backend("resume_jobs"):
            flags = list(self._pool.map(pending, [s.id for s in waiting]))
        refs = [s.reference for s, p in zip(waiting, flags, strict=True) if not p]
        change = {"status": _ACTIVATED, "updated_at": self._clock()}

        def write(tx: Tx, chunk: list[Any]) -> int:
            hits = [
                s
                for s in self._get_all("resume_jobs", chunk, tx)
                if _fields(s)["status"] == defined
            ]
            for s in hits:
                tx.update(s.reference, change)
            return len(hits)

        done = 0
        for start in range(0, len(refs), codec.MAX_WRITES):
            done += int(
                self._transact(
                    "resume_jobs", partial(write, chunk=refs[start : start + codec.MAX_WRITES])
                )
            )
        return done

    def finish_task(self, task_id: str, reason: str, *, hard: bool) -> int:
        for s in JOB_QUEUED:
            advance(s, JobStatus.CLOSED)
        now = self._clock()
        queued = {str(s) for s in JOB_QUEUED}
        query = self._of_task(task_id, _in("status", queued))
        change = {**codec.cancelled_fields(reason, now), "status": str(JobStatus.CLOSED)}
        closed = self._update_all("finish_task", query, lambda d: d["status"] in queued, change)
        if hard:
            self._flag_live(task_id, now)
        return closed

    def reassign_jobs(self, task_id: str, *, queue: str | None, priority: int | None) -> int:
        change: codec.Doc = {"updated_at": self._clock()}
        if queue is not None:
            change["queue"] = queue
        if priority is not None:
            change["priority"] = priority
        queued = {str(s) for s in JOB_QUEUED}
        query = self._of_task(task_id, _in("status", queued))
        return self._update_all(
            "reassign_jobs", query, lambda d: d["status"] in queued, change, moves_out=False
        )

    def _cancel_queued(self, task_id: str, reason: str, now: float) -> None:
        """Cancel the task's defined and activated jobs, up to 500 per transaction."""
        queued = {str(s) for s in JOB_QUEUED}
        query = self._of_task(task_id, _in("status", queued))
        change = codec.cancelled_fields(reason, now)
        self._update_all("abort_task", query, lambda d: d["status"] in queued, change)

    def _flag_live(self, task_id: str, now: float) -> None:
        """Ask the pilots holding the task's live jobs to kill them (they end the jobs)."""
        live = {str(s) for s in JOB_LIVE}
        query = self._of_task(task_id, _eq("kill_requested", False), _in("status", live))
        change = {"kill_requested": True, "updated_at": now}
        self._update_all(
            "abort_task", query, lambda d: d["status"] in live and not d["kill_requested"], change
        )

    def _update_all(
        self,
        what: str,
        query: Any,
        still: Callable[[codec.Doc], bool],
        change: codec.Doc,
        *,
        moves_out: bool = True,
    ) -> int:
        """Apply `change` to every job `query` finds, re-checking `still` in a transaction;
        return how many changed. `moves_out`: the change takes a job out of `query` (so the
        query is simply repeated until empty); otherwise its matches are listed once first."""

        def write(tx: Tx, refs: list[Any]) -> int:
            hits = [s for s in self._get_all(what, refs, tx) if still(_fields(s))]
            for s in hits:
                tx.update(s.reference, change)
            return len(hits)

        done = 0
        if moves_out:
            while page := self._stream(what, query.select([]).limit(codec.MAX_WRITES)):
                refs = [s.reference for s in page]
                done += int(self._transact(what, partial(write, refs=refs)))
            return done
        refs = [s.reference for s in self._stream(what, query.select([]))]
        for start in range(0, len(refs), codec.MAX_WRITES):
            chunk = refs[start : start + codec.MAX_WRITES]
            done += int(self._transact(what, partial(write, refs=chunk)))
        return done

    def task_flags(self, task_id: str) -> dict[str, set[str]]:
        """Reads only the finished jobs that set a flag (`flagged`), and only their flags."""
        query = self._of_task(task_id, _eq("status", str(JobStatus.FINISHED)), _eq("flagged", True))
        out: dict[str, set[str]] = {}
        for s in self._stream("task_flags", query.select(["flags"])):
            for name, value in codec.flags_from(_fields(s)).items():
                out.setdefault(name, set()).add(value)
        return out

    # -- workflows ------------------------------------------------------------------------------
    def add_workflow(
        self, workflow: Workflow, tasks: Sequence[Task], events: Sequence[Event]
    ) -> None:
        """One transaction when the tasks fit one commit (the usual case). Otherwise the tasks
        that do not fit are created first, in commits of their own, and the workflow with the
        last tasks and the events commits last: the workflow (and its `registered` event,
        which starts it) exists only once all its tasks do. A crash in between leaves tasks
        that no workflow names; a new submission makes a new workflow id."""
        ref = self._workflows.document(workflow.id)
        if self._read("add_workflow", ref) is not None:
            raise InvalidInput(f"workflow id {workflow.id} already exists")
        docs = ((t.id, codec.task_doc(t)) for t in tasks)
        runs = list(codec.chunks(docs, room=1 + len(events)))
        last = runs.pop() if runs else []
        for run in runs:
            batch = self._db.batch()
            for task_id, doc in run:
                batch.create(self._tasks.document(task_id), doc)
            with self._backend("add_workflow"):
                try:
                    batch.commit()
                except gexc.AlreadyExists as e:
                    raise InvalidInput(f"a task of workflow {workflow.id} already exists") from e

        def write(tx: Tx) -> None:
            if ref.get(transaction=tx).exists:
                raise InvalidInput(f"workflow id {workflow.id} already exists")
            refs = [self._tasks.document(task_id) for task_id, _ in last]
            found = self._db.get_all(refs, transaction=tx) if refs else []  # none: no call
            there = [s.id for s in found if s.exists]
            if there:
                raise InvalidInput(f"task id {there[0]} already exists", task_id=there[0])
            fresh = self._unstored(tx, events)
            tx.create(ref, codec.workflow_doc(workflow))
            for task_ref, (_, doc) in zip(refs, last, strict=True):
                tx.create(task_ref, doc)
            self._put_events(tx, fresh)

        self._transact("add_workflow", write)
        if events:
            self.on_events()

    def get_workflow(self, workflow_id: str) -> Workflow:
        doc = self._read("get_workflow", self._workflows.document(workflow_id))
        if doc is None:
            raise NotFound(f"no workflow with id {workflow_id!r}", workflow_id=workflow_id)
        return codec.workflow_from(workflow_id, doc)

    def list_workflows(self, *, limit: int = 100) -> list[Workflow]:
        query = self._workflows.order_by("created_at", direction=firestore.Query.DESCENDING)
        snaps = self._stream("list_workflows", query.limit(limit))
        return [codec.workflow_from(s.id, _fields(s)) for s in snaps]

    def set_workflow_status(
        self,
        workflow_id: str,
        expect: Iterable[WorkflowStatus],
        to: WorkflowStatus,
        *,
        reason: str = "",
    ) -> bool:
        expected = {str(s) for s in expect if advance(s, to)}
        change = {"status": str(to), "reason": reason, "updated_at": self._clock()}
        ref = self._workflows.document(workflow_id)
        return self._cas("set_workflow_status", ref, lambda d: d["status"] in expected, change)

    def workflow_tasks(self, workflow_id: str) -> list[Task]:
        query = self._tasks.where(filter=_eq("workflow_id", workflow_id))
        snaps = self._stream("workflow_tasks", query)
        tasks = [codec.task_from(s.id, _fields(s), {}) for s in snaps]
        return sorted(tasks, key=lambda t: (t.created_at, t.iteration, t.spec.name))

    # -- job dependencies -----------------------------------------------------------------------
    def release_children(self, parent_ids: Sequence[str]) -> dict[str, ParentsState]:
        """Mark first, then check. Each final parent's edges are marked (`_mark_edges`); only
        once every mark of this call is committed are the children checked, with two queries
        each (any edge pending? up to 3 that ended badly?). Firestore reads are strongly
        consistent, so of two releases of parents of one child, the one that commits its mark
        last sees both marks: a child whose last parents end at once is reported released at
        least once. Cost: a query of the parent's edges (one read when it has none, as for
        most jobs); with children, the parent, each edge read once and written once (if not
        marked yet) plus one write per 499 edges (see `_mark_edges`), two queries per child.
        """
        children: dict[str, None] = {}  # in order, each once
        for parent_id in dict.fromkeys(parent_ids):
            children.update(dict.fromkeys(self._mark_edges(parent_id)))
        if not children:
            return {}
        states = list(self._pool.map(self._parents_state, children))
        return dict(zip(children, states, strict=True))

    def _mark_edges(self, parent_id: str) -> list[str]:
        """If the job is final, record its status on every edge out of it; its children.

        Pages of up to 499 edges are marked with no lock: each page commits with a write of
        the job's own status onto the job, under the precondition "not updated since read".
        That write changes nothing (a write that changes nothing leaves the update time as
        it was); it makes the commit fail, writing no mark, if the job changed since it was
        read. A user's retry writes the job before it resets the job's edges, so it either
        comes before the commit (which then fails, and the job is read again: not final, so
        nothing is marked) or after it (and resets the marks). A transaction would lock the
        query's range: parents of one child, released at once, would queue on each other.
        """
        page_size = codec.MAX_WRITES - 1  # and the job's own write
        out_of = self._edges.where(filter=_eq("parent", parent_id)).order_by(_BY_ID)
        out_of = out_of.select(["child", "parent_status"]).limit(page_size)
        page = self._stream("release_children", out_of)
        if not page:
            return []  # no children (most jobs): one billed read
        job = self._jobs.document(parent_id)
        children: list[str] = []
        for _ in range(CAS_ROUNDS):
            with self._backend("release_children"):
                snap = job.get(field_paths=["status"])
            status = snap.get("status") if snap.exists else None
            if status not in codec.FINAL:
                return []  # not ended (any more): its edges stay pending
            unchanged = self._db.write_option(last_update_time=snap.update_time)
            while page:
                todo = [e for e in page if e.get("parent_status") != status]
                if todo and not self._mark_page(job, status, unchanged, todo):
                    break  # the job changed since read: read it again (this page is unmarked)
                children.extend(e.get("child") for e in page)
                if len(page) < page_size:
                    return children
                page = self._stream("release_children", out_of.start_after(page[-1]))
            else:
                return children
        raise BackendUnavailable(f"Firestore release_children: job {parent_id} kept changing")

    def _mark_page(self, job: Any, status: str, unchanged: Any, edges: list[Snapshot]) -> bool:
        """Record `status` on `edges` if `job` is still as read (`unchanged`). Whether it was."""
        batch = self._db.batch()
        for edge in edges:
            batch.update(edge.reference, {"parent_status": status})
        batch.update(job, {"status": status}, option=unchanged)
        with self._backend("release_children"):
            try:
                batch.commit()
            except gexc.FailedPrecondition:
                return False
        return True

    def _parents_state(self, child_id: str) -> ParentsState:
        """The child's parents summed up: any edge still pending? up to 3 that ended badly."""
        into = self._edges.where(filter=_eq("child", child_id))
        pending = _where(into, _eq("parent_status", None)).select([]).limit(1)
        bad = _where(into, _in("parent_status", codec.BAD_ENDS)).select(["parent"]).limit(3)
        with self._backend("release_children"):  # on a pool thread: its own attribution
            waits = bool(list(pending.stream()))
            failed = tuple(s.get("parent") for s in bad.stream())
        return ParentsState(waits, failed)

    def release_roots(self, task_id: str, now: float) -> int:
        """Activate, 500 per commit, the task's defined jobs with no parent (`n_parents` 0),
        each with the precondition "not updated since read" (a job that changed meanwhile,
        say cancelled by an abort, is left to the next query, which finds it if it is still
        a defined root)."""
        advance(JobStatus.DEFINED, JobStatus.ACTIVATED)
        roots = self._of_task(task_id, _eq("status", str(JobStatus.DEFINED)), _eq("n_parents", 0))
        query = roots.select([]).limit(codec.MAX_WRITES)
        change = {"status": _ACTIVATED, "updated_at": now}
        released = idle = 0
        while page := self._stream("release_roots", query):
            bulk = BulkWriteBatch(self._db)
            for snap in page:
                unchanged = self._db.write_option(last_update_time=snap.update_time)
                bulk.update(snap.reference, change, option=unchanged)
            with self._backend("release_roots"):
                response = bulk.commit()
            won = sum(status.code == 0 for status in response.status)
            released += won
            idle = 0 if won else idle + 1
            if idle >= CAS_ROUNDS:
                raise BackendUnavailable(f"Firestore release_roots: task {task_id} kept changing")
        return released

    def retry_jobs(self, task_id: str, now: float) -> int:
        """In three passes, as the SQLite store does in one transaction:

        1. each failed or cancelled job of the task starts a new attempt, defined (commits of
           up to 500 jobs, each with the precondition "not updated since read": a job that
           changed meanwhile is left to the next query, which finds it if it still needs it);
        2. right after each commit, the edges out of the jobs it reset are made pending again
           (the job is written first: see `_mark_edges`);
        3. once every job is reset, those with no pending edge into them are activated
           (compare-and-set on the version step 1 wrote), so a job whose parent is retried
           too waits for it, whichever page either was in.
        """
        for s in (JobStatus.FAILED, JobStatus.CANCELLED):
            advance(s, JobStatus.DEFINED)
            advance(s, JobStatus.ACTIVATED)
        query = self._of_task(task_id, _in("status", {JobStatus.FAILED, JobStatus.CANCELLED}))
        query = query.select(["attempt"]).limit(codec.MAX_WRITES)
        reset: dict[str, Any] = {}  # job id -> its update time after the reset
        idle = 0
        while page := self._stream("retry_jobs", query):
            bulk = BulkWriteBatch(self._db)
            for snap in page:
                unchanged = self._db.write_option(last_update_time=snap.update_time)
                bulk.update(
                    snap.reference, codec.retried_fields(snap.get("attempt"), now), option=unchanged
                )
            with self._backend("retry_jobs"):
                response = bulk.commit()
            won: list[str] = []
            for snap, status, result in zip(
                page, response.status, response.write_results, strict=True
            ):
                if status.code == 0:
                    reset[snap.id] = result.update_time
                    won.append(snap.id)
            self._forget(won)
            for job_id in won:
                self._reset_edges(job_id)
            idle = 0 if won else idle + 1
            if idle >= CAS_ROUNDS:
                raise BackendUnavailable(f"Firestore retry_jobs: task {task_id} kept changing")
        self._activate_ready(reset)
        return len(reset)

    def _reset_edges(self, parent_id: str) -> None:
        """Make pending again every edge out of the job (it runs again)."""
        out_of = self._edges.where(filter=_eq("parent", parent_id)).select(["parent_status"])
        marked = [e for e in self._stream("retry_jobs", out_of) if e.get("parent_status")]
        for start in range(0, len(marked), codec.MAX_WRITES):
            batch = self._db.batch()
            for edge in marked[start : start + codec.MAX_WRITES]:
                batch.update(edge.reference, {"parent_status": None})
            with self._backend("retry_jobs"):
                batch.commit()

    def _activate_ready(self, versions: dict[str, Any]) -> None:
        """Activate the jobs (as of `versions`) that no pending edge leads into."""

        def waits(job_id: str) -> bool:
            query = self._edges.where(filter=_eq("child", job_id))
            query = _where(query, _eq("parent_status", None)).select([]).limit(1)
            with self._backend("retry_jobs"):  # on a pool thread: its own attribution
                return bool(list(query.stream()))

        ids = list(versions)
        ready = [i for i, w in zip(ids, self._pool.map(waits, ids), strict=True) if not w]
        for start in range(0, len(ready), codec.MAX_WRITES):
            bulk = BulkWriteBatch(self._db)
            for job_id in ready[start : start + codec.MAX_WRITES]:
                unchanged = self._db.write_option(last_update_time=versions[job_id])
                bulk.update(self._jobs.document(job_id), {"status": _ACTIVATED}, option=unchanged)
            with self._backend("retry_jobs"):
                bulk.commit()  # a job changed since its reset was moved on by someone else

    # -- jobs -----------------------------------------------------------------------------------
    def get_job(self, job_id: str) -> Job:
        with self._backend("get_job"):
            snap = self._jobs.document(job_id).get()
        if not snap.exists:
            raise NotFound(f"no job with id {job_id!r}", job_id=job_id)
        self._remember_read([snap])
        return codec.job_from(job_id, _fields(snap))

    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Job]:
        """Also remembers the versions read: a pilot's report reads its jobs with this, then
        applies its changes (`apply_job_changes`) without reading them again."""
        refs = [self._jobs.document(i) for i in dict.fromkeys(job_ids)]
        out: dict[str, Job] = {}
        for start in range(0, len(refs), codec.MAX_WRITES):
            snaps = self._get_all("get_jobs", refs[start : start + codec.MAX_WRITES])
            self._remember_read(snaps)
            for s in snaps:
                out[s.id] = codec.job_from(s.id, _fields(s))
        return out

    def list_jobs(
        self, task_id: str, *, status: JobStatus | None = None, limit: int = 1000, offset: int = 0
    ) -> list[Job]:
        query = self._of_task(task_id, None if status is None else _eq("status", str(status)))
        query = query.order_by("index").offset(offset).limit(limit)
        return [codec.job_from(s.id, _fields(s)) for s in self._stream("list_jobs", query)]

    def attempts(self, job_id: str) -> list[Attempt]:
        """The records of ended attempts (`attempts`), and the live attempt's, which is kept
        with the job (see `codec.plan_changes`). The job is read first: an attempt that ends
        between the two reads is then found in `attempts`."""
        doc = self._read("attempts", self._jobs.document(job_id))
        query = self._attempts.where(filter=_eq("job_id", job_id)).order_by("attempt")
        found = [codec.attempt_from(_fields(s)) for s in self._stream("attempts", query)]
        records = {a.attempt: a for a in found}
        current = None if doc is None else codec.live_attempt(job_id, doc)
        kept = doc is not None and bool(doc.get("live_attempt"))
        # A record kept with the job is the newest. One in `attempts` for a live attempt was
        # written at the claim by an earlier version of this store: better than one made up
        # from the job's fields.
        if current is not None and (kept or current.attempt not in records):
            records[current.attempt] = current
        return [records[k] for k in sorted(records)]

    def claim_jobs(
        self,
        queue: str,
        pilot_id: str,
        n: int,
        capacity: Resources,
        now: float,
        owner: str | None = None,
    ) -> list[Job]:
        """Claim in rounds: query a window of candidates, pick (`codec.choose`: the head of the
        window, or after a lost race a random sample), commit the picks compare-and-set
        (DESIGN law 4). Candidates read and not tried yet are tried before the next query:
        each query bills a read per candidate it returns, a commit of picks bills only the
        picks it wins, and each pick's precondition checks that its job is still as read."""
        claimed: list[Job] = []
        losses = 0
        spare: list[Snapshot] = []  # candidates read and not tried yet
        complete = False  # the last query returned every candidate there was
        for _ in range(CLAIM_ROUNDS):
            need = n - len(claimed)
            if need <= 0:
                break
            if not spare:
                limit = codec.claim_window(need, losses)
                spare = self._claim_window(queue, capacity, limit, owner)
                if not spare:
                    break
                complete = len(spare) < limit
            picks = codec.choose(spare, need, losses)
            picked = {s.id for s in picks}
            spare = [s for s in spare if s.id not in picked]
            won, lost = self._claim_picks(picks, pilot_id, now)
            self._count_claim(lost=lost)
            claimed.extend(won)
            if lost:
                losses += 1
                # Back off exponentially (capped) with jitter: under a crowd of claimers a
                # short fixed pause just lines everyone up for the next collision.
                time.sleep(random.uniform(0, min(0.2, 0.005 * 2**losses)))
                continue
            if complete and not spare:
                break  # won every candidate there was
        else:
            if not claimed and losses:
                # Not "no work": telling the pilot so would idle it. It may ask again.
                raise BackendUnavailable(f"claims on queue {queue} kept losing races; try again")
        return sorted(claimed, key=lambda j: (-j.priority, j.created_at, j.index))

    def _count_claim(self, *, lost: bool) -> None:
        with self._stats_lock:
            self.claim_stats["commits"] += 1
            self.claim_stats["conflicts"] += int(lost)

    def _claim_window(
        self, queue: str, capacity: Resources, limit: int, owner: str | None = None
    ) -> list[Snapshot]:
        """The first `limit` activated jobs of `queue` (of `owner`, when given) that fit
        `capacity`, in dispatch order."""
        query = _where(
            self._jobs,
            _eq("queue", queue),
            _eq("status", _ACTIVATED),
            None if owner is None else _eq("owner", owner),
            FieldFilter("memory_mb", "<=", capacity.memory_mb),
            FieldFilter("cores", "<=", capacity.cores),
        ).order_by("priority", direction=firestore.Query.DESCENDING)
        query = query.order_by("created_at").order_by("index").limit(limit)
        return self._stream("claim_jobs", query)

    def _claim_picks(
        self, picks: list[Snapshot], pilot_id: str, now: float
    ) -> tuple[list[Job], bool]:
        """Send `picks` to the pilot: the jobs won, and whether any pick was lost to a race.

        Each job write carries the precondition "last updated when we read it" (a compare-and-
        set on the document version, checked by Firestore) and goes in one BatchWrite, which
        applies each write on its own: a pick another pilot took fails alone instead of failing
        the whole claim, and no locks are taken. That write is the whole claim: the attempt's
        record is the job's own fields until a change ends the attempt (`attempts`).
        """
        sent = codec.sent_fields(pilot_id, now)
        bulk = BulkWriteBatch(self._db)
        for snap in picks:
            unchanged = self._db.write_option(last_update_time=snap.update_time)
            bulk.update(snap.reference, sent, option=unchanged)
        with self._backend("claim_jobs"):
            response = bulk.commit()
        won: list[Job] = []
        for snap, status, result in zip(
            picks, response.status, response.write_results, strict=True
        ):
            if status.code == 0:
                job = codec.job_from(snap.id, {**_fields(snap), **sent})
                self._remember(job.id, result.update_time, str(job.status), job.attempt)
                won.append(job)
        return won, len(won) < len(picks)

    def apply_job_changes(self, changes: Sequence[JobChange]) -> list[bool]:
        """Each run of changes that fits one commit is applied in one atomic commit.

        When this store remembers the version of every job of the run (it read them, as a
        pilot's report does with `get_jobs`), the commit goes without reading them again: each
        job write has the precondition "not updated since that version", under which the
        outcome of every change is known from the version's (status, attempt); events are
        created (failing if one exists). If a precondition or a create fails, nothing is
        written and the run goes through a transaction, which reads the jobs and the events.
        """
        for ch in changes:
            if ch.before.status != ch.after.status:
                advance(ch.before.status, ch.after.status)
        results: list[bool] = []
        emitted = False
        for run in codec.change_runs(changes):
            done = self._apply_known(run)
            if done is None:
                done = self._transact("apply_job_changes", partial(self._apply, changes=run))
                self._forget(ch.before.id for ch in run)
            won, emits = done
            results.extend(won)
            emitted = emitted or emits
        if emitted:
            self.on_events()
        return results

    def _apply_known(self, changes: Sequence[JobChange]) -> tuple[list[bool], bool] | None:
        """Apply `changes` against the remembered versions of their jobs in one commit, with
        no read; None (nothing written) when that cannot be done or decided."""
        versions = self._remembered(ch.before.id for ch in changes)
        if versions is None:
            return None
        # The precondition below guarantees each job is as read, kill flag included; `before`
        # was made from that read.
        kills = {ch.before.id: ch.before.kill_requested for ch in changes}
        plan = codec.plan_changes(changes, {i: (v[1], v[2], kills[i]) for i, v in versions.items()})
        if plan.jobs.keys() != versions.keys():
            return None  # a job with no winning change gets no precondition to check its state
        batch = self._db.batch()
        for job_id, doc in plan.jobs.items():
            unchanged = self._db.write_option(last_update_time=versions[job_id][0])
            batch.update(self._jobs.document(job_id), doc, option=unchanged)
        for key, record in plan.attempts.items():
            batch.set(self._attempts.document(key), record)
        now = self._clock()
        for e in plan.events.values():
            batch.create(self._events.document(e.id), codec.event_doc(e, codec.SEQS.next(), now))
        with self._backend("apply_job_changes"):
            try:
                written = batch.commit()
            except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Conflict, gexc.NotFound):
                return None  # a job changed since, or an event is already stored
        for (job_id, doc), result in zip(plan.jobs.items(), written, strict=False):
            self._remember(job_id, result.update_time, doc["status"], doc["attempt"])
        return plan.won, bool(plan.events)

    def _apply(self, tx: Tx, changes: Sequence[JobChange]) -> tuple[list[bool], bool]:
        """One transaction of job changes, applied in order as if one after the other: reads
        the jobs and the winners' events, then writes what `codec.plan_changes` says."""
        refs = {ch.before.id: self._jobs.document(ch.before.id) for ch in changes}
        state = {
            s.id: (s.get("status"), s.get("attempt"), bool(s.get("kill_requested")))
            for s in self._db.get_all(list(refs.values()), transaction=tx)
            if s.exists
        }
        plan = codec.plan_changes(changes, state)
        fresh = self._unstored(tx, list(plan.events.values()))
        # Writes, after every read.
        for job_id, doc in plan.jobs.items():
            tx.update(refs[job_id], doc)
        for key, record in plan.attempts.items():
            tx.set(self._attempts.document(key), record)
        self._put_events(tx, fresh)
        return plan.won, bool(plan.events)

    def live_jobs_of_pilot(self, pilot_id: str) -> list[Job]:
        query = _where(self._jobs, _eq("pilot_id", pilot_id), _in("status", JOB_LIVE))
        snaps = self._stream("live_jobs_of_pilot", query)
        self._remember_read(snaps)  # requeued next, when the pilot has ended
        return [codec.job_from(s.id, _fields(s)) for s in snaps]

    def jobs_to_kill(self, pilot_id: str) -> list[str]:
        # Asked on every heartbeat and update reply: query only the flagged jobs (usually none:
        # one billed read), not every live job of the pilot.
        query = _where(self._jobs, _eq("pilot_id", pilot_id), _eq("kill_requested", True))
        live = {str(s) for s in JOB_LIVE}
        return [s.id for s in self._stream("jobs_to_kill", query) if _fields(s)["status"] in live]

    # -- queues ---------------------------------------------------------------------------------
    def put_queue(self, queue: Queue) -> None:
        with self._backend("put_queue"):
            self._queues.document(queue.name).set(codec.queue_doc(queue))

    def get_queue(self, name: str) -> Queue:
        doc = self._read("get_queue", self._queues.document(name))
        if doc is None:
            raise NotFound(f"no queue named {name!r}", queue=name)
        return codec.queue_from(doc)

    def list_queues(self) -> list[Queue]:
        return [
            codec.queue_from(_fields(s))
            for s in self._stream("list_queues", self._queues.order_by("name"))
        ]

    def owner_loads(self, queue: str) -> dict[str, OwnerLoad]:
        """Live jobs read by owner only (a few: what the pilots hold); owners waiting found by
        a skip scan (one single-document query per owner, ordered by owner), each counted by
        an aggregation capped at WAITING_COUNT_CAP."""
        live = _where(self._jobs, _eq("queue", queue), _in("status", JOB_LIVE))
        running: dict[str, int] = {}
        for snap in self._stream("owner_loads", live.select(["owner"])):
            owner = str(_fields(snap).get("owner", "local"))
            running[owner] = running.get(owner, 0) + 1
        waiting: dict[str, int] = {}
        last: str | None = None
        activated = _where(self._jobs, _eq("queue", queue), _eq("status", _ACTIVATED))
        for _ in range(1000):  # owners with jobs waiting on one queue: a handful
            query = (
                activated if last is None else _where(activated, FieldFilter("owner", ">", last))
            )
            found = self._stream("owner_loads", query.order_by("owner").select(["owner"]).limit(1))
            if not found:
                break
            last = str(_fields(found[0])["owner"])
            with self._backend("owner_loads"):
                waiting[last] = _count(
                    _where(activated, _eq("owner", last)).limit(WAITING_COUNT_CAP)
                )
        loads = {o: OwnerLoad(running.get(o, 0), n) for o, n in waiting.items()}
        for owner, n in running.items():
            loads.setdefault(owner, OwnerLoad(n, 0))
        return loads

    def list_activated(self, queue: str, limit: int) -> list[Job]:
        query = _where(self._jobs, _eq("queue", queue), _eq("status", _ACTIVATED))
        query = query.order_by("priority", direction=firestore.Query.DESCENDING)
        query = query.order_by("created_at").order_by("index").limit(limit)
        return [codec.job_from(s.id, _fields(s)) for s in self._stream("list_activated", query)]

    def count_failed_pilots(self, queue: str, since: float) -> int:
        failed = {str(PilotStatus.MISSED), str(PilotStatus.FAILED)}
        query = _where(
            self._pilots, _eq("queue", queue), _in("status", failed),
            FieldFilter("ended_at", ">=", since),
        )  # fmt: skip
        with self._backend("count_failed_pilots"):
            return _count(query)

    def note_scaling(self, queue: str, note: str, at: float) -> None:
        with self._backend("note_scaling"):
            self._scaler.document(queue).set({"note": note, "at": at})

    def scaling_notes(self) -> dict[str, tuple[str, float]]:
        snaps = self._stream("scaling_notes", self._scaler)
        return {s.id: (str(_fields(s)["note"]), float(_fields(s)["at"])) for s in snaps}

    def count_activated(self, queue: str) -> int:
        query = _where(self._jobs, _eq("queue", queue), _eq("status", _ACTIVATED))
        with self._backend("count_activated"):
            return _count(query)

    # -- pilots ---------------------------------------------------------------------------------
    def add_pilot(self, pilot: Pilot) -> None:
        with self._backend("add_pilot"):
            try:
                self._pilots.document(pilot.id).create(codec.pilot_doc(pilot))
            except gexc.AlreadyExists as e:
                raise InvalidInput(f"pilot id {pilot.id} already exists", pilot_id=pilot.id) from e

    def get_pilot(self, pilot_id: str) -> Pilot:
        doc = self._read("get_pilot", self._pilots.document(pilot_id))
        if doc is None:
            raise NotFound(f"no pilot with id {pilot_id!r}", pilot_id=pilot_id)
        return codec.pilot_from(doc)

    def update_pilot(self, pilot: Pilot, expect: Iterable[PilotStatus]) -> bool:
        expected = {str(s) for s in expect}
        record = codec.pilot_doc(pilot, heard=False)  # heartbeat fields: `heartbeat` only
        ref = self._pilots.document(pilot.id)
        return self._cas("update_pilot", ref, lambda d: d["status"] in expected, record)

    def heartbeat(self, pilot_id: str, now: float) -> Pilot | None:
        """A read and a blind update of the pilot document only (never a job): no precondition,
        since racing a sweep that ends the pilot is harmless (the sweep's compare-and-set is on
        the status, which a heartbeat does not touch). The read gives the record back."""
        ref = self._pilots.document(pilot_id)
        found = self._read("heartbeat", ref)
        if found is None or found["status"] in {str(s) for s in PILOT_FINAL}:
            return None
        with self._backend("heartbeat"):
            ref.update({"heartbeat_at": now, "heard_at": now})
        return codec.pilot_from({**found, "heartbeat_at": now, "heard_at": now})

    def list_pilots(self, *, queue: str | None = None, live: bool = False) -> list[Pilot]:
        query = _where(
            self._pilots,
            None if queue is None else _eq("queue", queue),
            _in("status", PILOT_LIVE) if live else None,
        )
        pilots = [codec.pilot_from(_fields(s)) for s in self._stream("list_pilots", query)]
        return sorted(pilots, key=lambda p: (p.created_at, p.id))

    def silent_pilots(self, queue: str, heard_before: float) -> list[Pilot]:
        query = _where(
            self._pilots,
            _eq("queue", queue),
            _in("status", PILOT_LIVE),
            FieldFilter("heard_at", "<", heard_before),
        )
        return [codec.pilot_from(_fields(s)) for s in self._stream("silent_pilots", query)]

    # -- outbox ---------------------------------------------------------------------------------
    def add_events(self, events: Sequence[Event]) -> None:
        self._transact("add_events", lambda tx: self._put_events(tx, self._unstored(tx, events)))
        if events:
            self.on_events()

    def pending_events(self, limit: int) -> list[StoredEvent]:
        query = _where(self._events, _eq("delivered", False), _eq("dead", False))
        query = query.order_by("seq").limit(limit)
        return [
            StoredEvent(
                seq=s.get("seq"), event=codec.event_from(s.id, _fields(s)), tries=s.get("tries")
            )
            for s in self._stream("pending_events", query)
        ]

    def _by_seq(self, what: str, seqs: Sequence[int]) -> list[Snapshot]:
        found: list[Snapshot] = []
        unique = sorted(set(seqs))
        for start in range(0, len(unique), codec.IN_LIMIT):
            chunk = unique[start : start + codec.IN_LIMIT]
            query = self._events.where(filter=FieldFilter("seq", "in", chunk)).select([])
            found.extend(self._stream(what, query))
        return found

    def mark_delivered(self, seqs: Sequence[int], now: float) -> None:
        snaps = self._by_seq("mark_delivered", seqs)
        change = {"delivered": True, "delivered_at": now, "tries": firestore.Increment(1)}
        for start in range(0, len(snaps), codec.MAX_WRITES):
            batch = self._db.batch()
            for s in snaps[start : start + codec.MAX_WRITES]:
                batch.update(s.reference, change)
            with self._backend("mark_delivered"):
                batch.commit()

    def mark_failed(self, seq: int, error: str, *, dead: bool) -> None:
        change = {"tries": firestore.Increment(1), "error": error[:2000], "dead": dead}
        for s in self._by_seq("mark_failed", [seq]):
            with self._backend("mark_failed"):
                s.reference.update(change)

    def dead_events(self) -> list[tuple[str, str]]:
        """(event id, error) of events parked after failing delivery: for `skypanda doctor`."""
        query = self._events.where(filter=_eq("dead", True))
        return [(s.id, s.get("error")) for s in self._stream("dead_events", query)]
