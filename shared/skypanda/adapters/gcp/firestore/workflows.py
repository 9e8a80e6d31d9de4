"""WorkflowStore on Firestore: workflows, and the job dependencies (`edges`, one document per
(parent, child)) that releases, root releases and retries walk. See infra/FIRESTORE.md."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch

from skypanda.adapters.gcp.firestore import codec
from skypanda.adapters.gcp.firestore.base import (
    ACTIVATED,
    BY_ID,
    CAS_ROUNDS,
    FirestoreBase,
    Snapshot,
    Tx,
    eq,
    fields,
    is_in,
    where,
)
from skypanda.adapters.gcp.firestore.plans import chunks
from skypanda.domain.dag import ParentsState
from skypanda.domain.errors import BackendUnavailable, InvalidInput, NotFound
from skypanda.domain.events import Event
from skypanda.domain.models import Task
from skypanda.domain.states import JobStatus, WorkflowStatus, advance
from skypanda.domain.workflow import Workflow


class WorkflowPart(FirestoreBase):
    """The `workflows` and `edges` collections."""

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
        runs = list(chunks(docs, room=1 + len(events)))
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
        return [codec.workflow_from(s.id, fields(s)) for s in snaps]

    def set_workflow_status(
        self,
        workflow_id: str,
        expect: Iterable[WorkflowStatus],
        to: WorkflowStatus,
        *,
        reason: str = "",
        events: Sequence[Event] = (),
    ) -> bool:
        expected = {str(s) for s in expect if advance(s, to)}
        change = {"status": str(to), "reason": reason, "updated_at": self._clock()}
        ref = self._workflows.document(workflow_id)
        return self._cas(
            "set_workflow_status", ref, lambda d: d["status"] in expected, change, events
        )

    def held_workflows(self, trigger_id: str, limit: int) -> list[Workflow]:
        query = self._workflows.where(filter=eq("waits_on", trigger_id)).where(
            filter=eq("status", str(WorkflowStatus.REGISTERED))
        )
        snaps = self._stream("held_workflows", query.order_by("created_at").limit(limit))
        return [codec.workflow_from(s.id, fields(s)) for s in snaps]

    def end_hold(
        self,
        workflow_id: str,
        to: WorkflowStatus,
        *,
        reason: str = "",
        events: Sequence[Event] = (),
    ) -> bool:
        registered = str(WorkflowStatus.REGISTERED)
        if to is not WorkflowStatus.REGISTERED:
            advance(WorkflowStatus.REGISTERED, to)
        change = {"status": str(to), "reason": reason, "waits_on": None,
                  "updated_at": self._clock()}  # fmt: skip
        ref = self._workflows.document(workflow_id)

        def held(d: codec.Doc) -> bool:
            return d["status"] == registered and d.get("waits_on") is not None

        return self._cas("end_hold", ref, held, change, events)

    def workflow_tasks(self, workflow_id: str) -> list[Task]:
        query = self._tasks.where(filter=eq("workflow_id", workflow_id))
        snaps = self._stream("workflow_tasks", query)
        tasks = [codec.task_from(s.id, fields(s), {}) for s in snaps]
        return sorted(tasks, key=lambda t: (t.created_at, t.iteration, t.spec.name))

    # -- job dependencies --------------------------------------------------------------------------
    def release_children(self, parent_ids: Sequence[str]) -> dict[str, ParentsState]:
        """Mark first, then check. Each final parent's edges are marked (`_mark_edges`); only
        once every mark of this call is committed are the children checked, with two queries
        each (any edge pending? up to 3 that ended badly?). Firestore reads are strongly
        consistent, so of two releases of parents of one child, the one that commits its mark
        last sees both marks: a child whose last parents end at once is reported released at
        least once. A child whose edge says it has no other parent (`only`) is summed up from
        its parent's status alone: no edge of its is pending, and its parent is the one that
        ended badly, or none. Cost: a query of the parent's edges (one read when it has none,
        as for most jobs); with children, the parent, each edge read once and written once (if
        not marked yet) plus one write per 499 edges (see `_mark_edges`), two queries per child
        with other parents.
        """
        children: dict[str, None] = {}  # in order, each once
        known: dict[str, ParentsState] = {}  # children of one parent: summed up already
        for parent_id in dict.fromkeys(parent_ids):
            marked, status = self._mark_edges(parent_id)
            for child, only in marked:
                children[child] = None
                if only:
                    failed = (parent_id,) if status in codec.BAD_ENDS else ()
                    known[child] = ParentsState(False, failed)
        if not children:
            return {}
        rest = [c for c in children if c not in known]
        known.update(zip(rest, self._pool.map(self._parents_state, rest), strict=True))
        return {c: known[c] for c in children}

    def _mark_edges(self, parent_id: str) -> tuple[list[tuple[str, bool]], str | None]:
        """If the job is final, record its status on every edge out of it; its children (each
        with whether it has no other parent), and the status recorded.

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
        out_of = self._edges.where(filter=eq("parent", parent_id)).order_by(BY_ID)
        out_of = out_of.select(["child", "parent_status", "only"]).limit(page_size)
        page = self._stream("release_children", out_of)
        if not page:
            return [], None  # no children (most jobs): one billed read
        job = self._jobs.document(parent_id)
        children: list[tuple[str, bool]] = []
        for _ in range(CAS_ROUNDS):
            with self._backend("release_children"):
                snap = job.get(field_paths=["status"])
            status = snap.get("status") if snap.exists else None
            if status not in codec.FINAL:
                return [], None  # not ended (any more): its edges stay pending
            unchanged = self._db.write_option(last_update_time=snap.update_time)
            while page:
                todo = [e for e in page if e.get("parent_status") != status]
                if todo and not self._mark_page(job, status, unchanged, todo):
                    break  # the job changed since read: read it again (this page is unmarked)
                # (`only` is absent on edges written before it: their child is queried)
                children.extend((e.get("child"), fields(e).get("only") is True) for e in page)
                if len(page) < page_size:
                    return children, status
                page = self._stream("release_children", out_of.start_after(page[-1]))
            else:
                return children, status
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
        into = self._edges.where(filter=eq("child", child_id))
        pending = where(into, eq("parent_status", None)).select([]).limit(1)
        bad = where(into, is_in("parent_status", codec.BAD_ENDS)).select(["parent"]).limit(3)
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
        roots = self._of_task(task_id, eq("status", str(JobStatus.DEFINED)), eq("n_parents", 0))
        query = roots.select([]).limit(codec.MAX_WRITES)
        change = {"status": ACTIVATED, "updated_at": now}
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
           the record of the attempt it ends, kept with the job, is first copied to
           `attempts` (an upsert: a job whose reset then loses is copied again, the same);
        2. right after each commit, the edges out of the jobs it reset are made pending again
           (the job is written first: see `_mark_edges`);
        3. once every job is reset, those with no pending edge into them are activated
           (compare-and-set on the version step 1 wrote), so a job whose parent is retried
           too waits for it, whichever page either was in.
        """
        for s in (JobStatus.FAILED, JobStatus.CANCELLED):
            advance(s, JobStatus.DEFINED)
            advance(s, JobStatus.ACTIVATED)
        query = self._of_task(task_id, is_in("status", {JobStatus.FAILED, JobStatus.CANCELLED}))
        query = query.select(["attempt", "live_attempt"]).limit(codec.MAX_WRITES)
        reset: dict[str, Any] = {}  # job id -> its update time after the reset
        idle = 0
        while page := self._stream("retry_jobs", query):
            self._keep_records(page)
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

    def _keep_records(self, jobs: Sequence[Snapshot]) -> None:
        """Write to `attempts` the attempt records kept in these jobs' documents (one commit:
        a page of jobs is at most 500), before a reset starts new attempts that replace them."""
        records = [r for s in jobs if (r := codec.kept_attempt(fields(s))) is not None]
        if not records:
            return
        batch = self._db.batch()
        for r in records:
            batch.set(self._attempts.document(codec.attempt_key(r)), codec.attempt_doc(r))
        with self._backend("retry_jobs"):
            batch.commit()

    def _reset_edges(self, parent_id: str) -> None:
        """Make pending again every edge out of the job (it runs again)."""
        out_of = self._edges.where(filter=eq("parent", parent_id)).select(["parent_status"])
        marked = [e for e in self._stream("retry_jobs", out_of) if e.get("parent_status")]
        for start in range(0, len(marked), codec.MAX_WRITES):
            batch = self._db.batch()
            for edge in marked[start : start + codec.MAX_WRITES]:
                batch.update(edge.reference, {"parent_status": None})
            with self._backend("retry_jobs"):
                batch.commit()

    def _activate_ready(self, versions: dict[str, Any]) -> None:
        """Activate the jobs (as of `versions`) that no pending edge leads into."""
        ids = list(versions)
        waits = self._pool.map(lambda job_id: self._waits_for_parent("retry_jobs", job_id), ids)
        ready = [i for i, w in zip(ids, waits, strict=True) if not w]
        for start in range(0, len(ready), codec.MAX_WRITES):
            bulk = BulkWriteBatch(self._db)
            for job_id in ready[start : start + codec.MAX_WRITES]:
                unchanged = self._db.write_option(last_update_time=versions[job_id])
                bulk.update(self._jobs.document(job_id), {"status": ACTIVATED}, option=unchanged)
            with self._backend("retry_jobs"):
                bulk.commit()  # a job changed since its reset was moved on by someone else
