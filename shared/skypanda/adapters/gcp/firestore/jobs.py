"""JobStore on Firestore, but claims (`claims`): jobs read, their attempts, changes applied
compare-and-set (without a read when this store knows the versions), task-wide bulks
(`bulk`), and the cores of a queue's waiting jobs that the scaler sums."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import partial

from google.api_core import exceptions as gexc
from google.cloud.firestore_v1.base_query import FieldFilter

from skypanda.adapters.gcp.firestore import codec
from skypanda.adapters.gcp.firestore.base import (
    ACTIVATED,
    FirestoreBase,
    Tx,
    count_cores,
    eq,
    fields,
    is_in,
    where,
)
from skypanda.adapters.gcp.firestore.bulk import apply_bulk
from skypanda.adapters.gcp.firestore.plans import SEQS, change_runs, plan_changes
from skypanda.domain.bulk import JobBulk
from skypanda.domain.errors import NotFound
from skypanda.domain.models import Attempt, Job, Resources
from skypanda.domain.scaling import Work
from skypanda.domain.states import JOB_LIVE, JobStatus, advance
from skypanda.ports import JobChange


class JobPart(FirestoreBase):
    """The `jobs` and `attempts` collections, one job at a time or a task's bulk."""

    def get_job(self, job_id: str) -> Job:
        with self._backend("get_job"):
            snap = self._jobs.document(job_id).get()
        if not snap.exists:
            raise NotFound(f"no job with id {job_id!r}", job_id=job_id)
        self._remember_read([snap])
        return codec.job_from(job_id, fields(snap))

    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Job]:
        """Also remembers the versions read: a pilot's report reads its jobs with this, then
        applies its changes (`apply_job_changes`) without reading them again."""
        refs = [self._jobs.document(i) for i in dict.fromkeys(job_ids)]
        out: dict[str, Job] = {}
        for start in range(0, len(refs), codec.MAX_WRITES):
            snaps = self._get_all("get_jobs", refs[start : start + codec.MAX_WRITES])
            self._remember_read(snaps)
            for s in snaps:
                out[s.id] = codec.job_from(s.id, fields(s))
        return out

    def list_jobs(
        self, task_id: str, *, status: JobStatus | None = None, limit: int = 1000, offset: int = 0
    ) -> list[Job]:
        query = self._of_task(task_id, None if status is None else eq("status", str(status)))
        query = query.order_by("index").offset(offset).limit(limit)
        return [codec.job_from(s.id, fields(s)) for s in self._stream("list_jobs", query)]

    def attempts(self, job_id: str) -> list[Attempt]:
        """The records of replaced attempts (`attempts`), and the current attempt's, which is
        kept with the job (see `plans.plan_changes`). The job is read first: an attempt that
        is replaced between the two reads is then found in `attempts`."""
        doc = self._read("attempts", self._jobs.document(job_id))
        query = self._attempts.where(filter=eq("job_id", job_id)).order_by("attempt")
        found = [codec.attempt_from(fields(s)) for s in self._stream("attempts", query)]
        records = {a.attempt: a for a in found}
        if doc is None:
            return found
        # A record kept with the job is the newest. One in `attempts` for the current attempt
        # was written by an earlier version of this store (at the claim, or when it ended).
        kept = codec.kept_attempt(doc)
        if kept is not None:
            records[kept.attempt] = kept
        current = codec.live_attempt(job_id, doc)
        if current is not None and current.attempt not in records:
            records[current.attempt] = current
        return [records[k] for k in sorted(records)]

    def atomic(self) -> AbstractContextManager[bool]:
        """No scope commits together here: each write commits on its own (JobStore.atomic)."""
        return nullcontext(False)

    def live_jobs_of_pilot(self, pilot_id: str) -> list[Job]:
        query = where(self._jobs, eq("pilot_id", pilot_id), is_in("status", JOB_LIVE))
        snaps = self._stream("live_jobs_of_pilot", query)
        self._remember_read(snaps)  # requeued next, when the pilot has ended
        return [codec.job_from(s.id, fields(s)) for s in snaps]

    def jobs_to_kill(self, pilot_id: str) -> list[str]:
        # Asked on every heartbeat and update reply: query only the flagged jobs (usually none:
        # one billed read), not every live job of the pilot.
        query = where(self._jobs, eq("pilot_id", pilot_id), eq("kill_requested", True))
        live = {str(s) for s in JOB_LIVE}
        return [s.id for s in self._stream("jobs_to_kill", query) if fields(s)["status"] in live]

    def waiting_cores(self, queue: str, capacity: Resources, limit: int) -> Work:
        query = where(
            self._jobs,
            eq("queue", queue),
            eq("status", ACTIVATED),
            FieldFilter("cores", "<=", capacity.cores),
            FieldFilter("memory_mb", "<=", capacity.memory_mb),
        ).limit(limit)  # billed by the entries it counts: at most `limit`
        with self._backend("waiting_cores"):
            return count_cores(query)

    # -- changes -----------------------------------------------------------------------------------
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
        for run in change_runs(changes):
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
        plan = plan_changes(changes, {i: (v[1], v[2], kills[i]) for i, v in versions.items()})
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
            batch.create(self._events.document(e.id), codec.event_doc(e, SEQS.next(), now))
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
        the jobs and the winners' events, then writes what `plans.plan_changes` says."""
        refs = {ch.before.id: self._jobs.document(ch.before.id) for ch in changes}
        state = {
            s.id: (s.get("status"), s.get("attempt"), bool(s.get("kill_requested")))
            for s in self._db.get_all(list(refs.values()), transaction=tx)
            if s.exists
        }
        plan = plan_changes(changes, state)
        fresh = self._unstored(tx, list(plan.events.values()))
        # Writes, after every read.
        for job_id, doc in plan.jobs.items():
            tx.update(refs[job_id], doc)
        for key, record in plan.attempts.items():
            tx.set(self._attempts.document(key), record)
        self._put_events(tx, fresh)
        return plan.won, bool(plan.events)

    def apply_bulk(
        self, bulk: JobBulk, now: float, *, first_index: int = 0, count: int | None = None
    ) -> int:
        """See `firestore.bulk`: the jobs of an index range, each compare-and-set."""
        return apply_bulk(self, bulk, now, first_index=first_index, count=count)
