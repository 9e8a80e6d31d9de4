"""JobStore on SQLite: jobs read, claimed (one `UPDATE ... RETURNING` over the dispatch index),
changed compare-and-set a batch at a time (`UPDATE ... FROM (VALUES ...) RETURNING`), and
changed task-wide by a `JobBulk` in one `UPDATE`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from skypanda.adapters.local.sqlite.db import (
    ATTEMPT_COLUMNS,
    CAS_PAD,
    CAS_ROWS,
    JOB_COLUMNS,
    UPSERT_ATTEMPT,
    SqliteDb,
    attempt_row,
    cas_size,
    cas_update,
    chunks,
    job_from_row,
    job_row,
    marks,
)
from skypanda.domain.bulk import JobBulk
from skypanda.domain.errors import NotFound
from skypanda.domain.fairshare import OwnerLoad
from skypanda.domain.jobflow import JobChange
from skypanda.domain.models import Attempt, Job, Resources
from skypanda.domain.scaling import Work
from skypanda.domain.states import JOB_LIVE, JobStatus, advance
from skypanda.ports import OWNERS_SCANNED, WAITING_COUNT_CAP

_LIVE = [str(s) for s in JOB_LIVE]
ACTIVATED = JobStatus.ACTIVATED
LIVE_SQL = "status IN ('sent', 'starting', 'running')"
"""Live jobs, written as the partial indexes on them say (schema.sql): SQLite uses a partial
index only for a query that names its condition in the same words. With `IN (?, ?, ?)` it
cannot tell, and scanned every job of the database on each heartbeat and report."""
assert {s.strip(" '") for s in LIVE_SQL[11:-1].split(",")} == set(_LIVE)
ACTIVATED_SQL = f"status = '{ACTIVATED}'"
"""Activated jobs, as the dispatch indexes say, and as a literal: a bound `status = ?` makes
SQLite compile the statement again on every run (it checks the value against the partial
indexes' condition each time it is bound), which made the claim of one job cost about 0.5 ms
(its triggers and `RETURNING` are compiled with it), two thirds of its time."""


class SqliteJobs(SqliteDb):
    # -- reading ---------------------------------------------------------------------------------
    def get_job(self, job_id: str) -> Job:
        rows = self._read(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise NotFound(f"no job with id {job_id!r}", job_id=job_id)
        return job_from_row(rows[0])

    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Job]:
        out: dict[str, Job] = {}
        for chunk in chunks(list(dict.fromkeys(job_ids))):
            rows = self._read(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id IN ({marks(chunk)})", chunk)
            out.update((r["id"], job_from_row(r)) for r in rows)
        return out

    def list_jobs(
        self, task_id: str, *, status: JobStatus | None = None, limit: int = 1000, offset: int = 0
    ) -> list[Job]:
        where, args = "task_id = ?", [task_id]
        if status is not None:
            where += " AND status = ?"
            args.append(str(status))
        rows = self._read(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where} ORDER BY idx LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [job_from_row(r) for r in rows]

    def attempts(self, job_id: str) -> list[Attempt]:
        rows = self._read(
            f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE job = (SELECT rowid FROM jobs "
            f"WHERE id = ?) ORDER BY attempt",
            (job_id,),
        )
        return [
            Attempt(**{k: r[k] for k in r.keys() if k != "status"}, status=JobStatus(r["status"]))  # noqa: SIM118
            for r in rows
        ]

    def live_jobs_of_pilot(self, pilot_id: str) -> list[Job]:
        rows = self._read(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE pilot_id = ? AND {LIVE_SQL}", (pilot_id,)
        )
        return [job_from_row(r) for r in rows]

    def jobs_to_kill(self, pilot_id: str) -> list[str]:
        # Asked on every heartbeat and update reply: ids only, no job decoded.
        rows = self._read(
            f"SELECT id FROM jobs WHERE pilot_id = ? AND {LIVE_SQL} AND kill_requested = 1",
            (pilot_id,),
        )
        return [r["id"] for r in rows]

    def count_activated(self, queue: str) -> int:
        rows = self._read(
            f"SELECT count(*) AS n FROM jobs WHERE queue = ? AND {ACTIVATED_SQL}", (queue,)
        )
        return int(rows[0]["n"])

    def waiting_cores(self, queue: str, capacity: Resources, limit: int) -> Work:
        # The dispatch index finds the queue's activated jobs; each one's row gives its size
        # (about 10x the cost of count_activated, which reads the index alone): at most
        # `limit` rows, so a queue of a million waiting jobs costs what its pilots can hold.
        rows = self._read(
            f"SELECT count(*) AS n, total(cores) AS cores FROM (SELECT cores FROM jobs "
            f"WHERE queue = ? AND {ACTIVATED_SQL} AND memory_mb <= ? AND cores <= ? LIMIT ?)",
            (queue, capacity.memory_mb, capacity.cores, limit),
        )
        return Work(jobs=int(rows[0]["n"]), cores=int(rows[0]["cores"]))

    def list_activated(self, queue: str, limit: int) -> list[Job]:
        rows = self._read(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE queue = ? AND {ACTIVATED_SQL} "
            f"ORDER BY priority DESC, created_at, idx LIMIT ?",
            (queue, limit),
        )
        return [job_from_row(r) for r in rows]

    # -- dispatch --------------------------------------------------------------------------------
    def claim_jobs(
        self,
        queue: str,
        pilot_id: str,
        n: int,
        capacity: Resources,
        now: float,
        owner: str | None = None,
    ) -> list[Job]:
        mine, args = ("AND owner = ? ", [owner]) if owner is not None else ("", [])
        with self._tx() as db:
            rows = db.execute(
                # (`activated_at = updated_at`: the job's last change before this one, as
                # every expression of a SET reads the row as it was)
                f"UPDATE jobs SET status = ?, pilot_id = ?, activated_at = updated_at, "
                f"updated_at = ?, started_at = ?, "
                f"exit_code = NULL, error_code = NULL, error_diag = '', log_uri = NULL, "
                f"ended_at = NULL, max_rss_mb = NULL WHERE id IN (SELECT id FROM jobs "
                f"WHERE queue = ? AND {ACTIVATED_SQL} {mine}AND memory_mb <= ? AND cores <= ? "
                f"ORDER BY priority DESC, created_at, idx LIMIT ?) RETURNING {JOB_COLUMNS}",
                (str(JobStatus.SENT), pilot_id, now, now, queue, *args, capacity.memory_mb,
                 capacity.cores, n),
            ).fetchall()  # fmt: skip
            jobs = sorted(
                (job_from_row(r) for r in rows), key=lambda j: (-j.priority, j.created_at, j.index)
            )
            sent = [
                Attempt(
                    job_id=j.id,
                    attempt=j.attempt,
                    pilot_id=pilot_id,
                    status=JobStatus.SENT,
                    started_at=now,
                )
                for j in jobs
            ]
            db.executemany(UPSERT_ATTEMPT, [attempt_row(a) for a in sent])
            self._claimed(queue, len(jobs))
        return jobs

    def waiting_owners(self, queue: str, limit: int) -> list[str]:
        # A skip scan of the (queue, status, owner) dispatch index, one seek per owner, instead
        # of DISTINCT over every activated job of the queue.
        rows = self._read(
            "WITH RECURSIVE o(owner) AS ("
            f" SELECT min(owner) FROM jobs WHERE queue = ?1 AND {ACTIVATED_SQL}"
            f" UNION ALL SELECT (SELECT min(owner) FROM jobs WHERE queue = ?1 AND {ACTIVATED_SQL}"
            " AND owner > o.owner) FROM o WHERE o.owner IS NOT NULL LIMIT ?2"
            ") SELECT owner FROM o WHERE owner IS NOT NULL",
            (queue, limit),
        )
        return [r["owner"] for r in rows]

    def owner_loads(self, queue: str) -> dict[str, OwnerLoad]:
        running = {
            r["owner"]: r["n"]
            for r in self._read(
                f"SELECT owner, count(*) AS n FROM jobs WHERE queue = ? AND {LIVE_SQL} "
                f"GROUP BY owner",
                (queue,),
            )
        }
        waiting_owners = self.waiting_owners(queue, OWNERS_SCANNED)
        loads: dict[str, OwnerLoad] = {}
        for owner in waiting_owners:
            (count,) = self._read(
                "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE queue = ? AND owner = ? "
                f"AND {ACTIVATED_SQL} LIMIT ?)",
                (queue, owner, WAITING_COUNT_CAP),
            )[0]
            loads[owner] = OwnerLoad(running.get(owner, 0), int(count))
        for owner, n in running.items():
            loads.setdefault(owner, OwnerLoad(n, 0))
        return loads

    # -- changes ---------------------------------------------------------------------------------
    def apply_job_changes(self, changes: Sequence[JobChange]) -> list[bool]:
        for ch in changes:
            if ch.before.status != ch.after.status:
                advance(ch.before.status, ch.after.status)
        results = [False] * len(changes)
        emitted = False
        with self._tx() as db:
            for run in _runs(changes):
                size = cas_size(len(run))
                values = [v for i in run for v in _cas_values(changes[i])]
                values += CAS_PAD * (size - len(run))
                won = {r[0] for r in db.execute(cas_update(size), values).fetchall()}
                winners = [changes[i] for i in run if changes[i].before.id in won]
                for i in run:
                    results[i] = changes[i].before.id in won
                attempts = [attempt_row(c.attempt) for c in winners if c.attempt is not None]
                if attempts:  # none for a release
                    db.executemany(UPSERT_ATTEMPT, attempts)
                # a retry, a requeue, a release
                self._activated(c.after.queue for c in winners if c.after.status is ACTIVATED)
                emitted = self._emit(db, [e for c in winners for e in c.events]) or emitted
        if emitted:
            self.on_events()
        return results

    @property
    def bulk_page(self) -> int | None:
        return None  # a bulk is one UPDATE over the whole task, in one transaction

    def apply_bulk(
        self, bulk: JobBulk, now: float, *, first_index: int = 0, count: int | None = None
    ) -> int:
        sets, set_args = _bulk_sets(bulk, now)
        where, where_args = _bulk_where(bulk, first_index, count)
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE jobs SET {', '.join(sets)} WHERE {' AND '.join(where)}",
                (*set_args, *where_args),
            )
            return cur.rowcount


def _cas_values(ch: JobChange) -> tuple[Any, ...]:
    """The values of one change in `cas_update`."""
    b = ch.before
    return (*job_row(ch.after), str(b.status), b.attempt, int(b.kill_requested))


def _runs(changes: Sequence[JobChange]) -> Iterator[list[int]]:
    """The changes' indexes in order, cut into runs of at most CAS_ROWS with no job twice: a
    second change of a job is compared with what the first wrote, so it goes in a later run."""
    run: list[int] = []
    ids: set[str] = set()
    for i, ch in enumerate(changes):
        if len(run) == CAS_ROWS or ch.before.id in ids:
            yield run
            run, ids = [], set()
        run.append(i)
        ids.add(ch.before.id)
    if run:
        yield run


# One UPDATE per bulk, written from the bulk's fields: `_bulk_where` is `JobBulk.selects` and
# `_bulk_sets` is `JobBulk.changes`, clause by clause.


def _bulk_sets(bulk: JobBulk, now: float) -> tuple[list[str], list[Any]]:
    sets: list[str] = ["updated_at = ?"]
    args: list[Any] = [now]
    if bulk.to is not None:
        sets.append("status = ?")
        args.append(str(bulk.to))
    if bulk.reason is not None:
        sets.append("error_diag = ?")
        args.append(bulk.reason)
    if bulk.ends:
        sets.append("ended_at = ?")
        args.append(now)
    if bulk.kill:
        sets.append("kill_requested = 1")
    if bulk.queue is not None:
        sets.append("queue = ?")
        args.append(bulk.queue)
    if bulk.priority is not None:
        sets.append("priority = ?")
        args.append(bulk.priority)
    if bulk.memory_mb is not None:
        sets.append("memory_mb = max(memory_mb, ?)")  # raised, never lowered
        args.append(bulk.memory_mb)
    return sets, args


def _bulk_where(bulk: JobBulk, first_index: int, count: int | None) -> tuple[list[str], list[Any]]:
    select = sorted(str(s) for s in bulk.select)
    where = ["task_id = ?", f"status IN ({marks(select)})", "idx >= ?"]
    args: list[Any] = [bulk.task_id, *select, first_index]
    if count is not None:
        where.append("idx < ?")
        args.append(first_index + count)
    if bulk.unblocked_only:
        where.append(
            "NOT EXISTS (SELECT 1 FROM job_links "
            "WHERE child = jobs.rowid AND parent_status IS NULL)"
        )
    if bulk.to is None:  # only the jobs the change would alter
        alters: list[str] = []
        if bulk.kill:
            alters.append("kill_requested = 0")
        if bulk.queue is not None:
            alters.append("queue != ?")
            args.append(bulk.queue)
        if bulk.priority is not None:
            alters.append("priority != ?")
            args.append(bulk.priority)
        if bulk.memory_mb is not None:
            alters.append("memory_mb < ?")
            args.append(bulk.memory_mb)
        where.append(f"({' OR '.join(alters)})")
    return where, args
