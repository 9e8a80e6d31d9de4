"""The embedded Store: one SQLite file in WAL mode.

Every write runs in a `BEGIN IMMEDIATE` transaction, so writers queue on SQLite's own lock
instead of failing half-way; compare-and-set is a `WHERE status = ?` on the UPDATE, and claims
are one `UPDATE ... RETURNING` over the dispatch index. Events go to the `outbox` table in the
same transaction as the change that caused them, so an event exists iff its change committed.
Connections are per thread (sqlite3 objects must not be shared across threads).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from skypanda.domain.dag import ParentsState
from skypanda.domain.errors import BackendUnavailable, Conflict, InvalidInput, NotFound
from skypanda.domain.events import Event, EventType
from skypanda.domain.fairshare import OwnerLoad
from skypanda.domain.models import (
    Attempt,
    Job,
    OutputFile,
    Pilot,
    Queue,
    Resources,
    Task,
    TaskSpec,
    jsonable,
)
from skypanda.domain.states import (
    JOB_FINAL,
    JOB_LIVE,
    JOB_QUEUED,
    PILOT_FINAL,
    PILOT_LIVE,
    JobStatus,
    PilotStatus,
    TaskStatus,
    WorkflowStatus,
    advance,
)
from skypanda.domain.workflow import Workflow, WorkflowSpec
from skypanda.ports import WAITING_COUNT_CAP, JobChange, StoredEvent

_SCHEMA = resources.files("skypanda.adapters.local").joinpath("schema.sql").read_text()
_INSERT_CHUNK = 5000
_UPSERT_ATTEMPT = (
    "INSERT OR REPLACE INTO attempts (job_id, attempt, pilot_id, status, started_at, ended_at, "
    "exit_code, error_code, error_diag, log_uri) VALUES (?,?,?,?,?,?,?,?,?,?)"
)

JOB_COLUMNS = (
    "id, task_id, idx, status, attempt, failures, max_attempts, queue, priority, memory_mb, "
    "cores, walltime_s, command, inputs, env, parents, pilot_id, kill_requested, exit_code, "
    "error_code, error_diag, log_uri, created_at, updated_at, started_at, ended_at, flags, "
    "stage_in, output_patterns, outputs, owner"
)
# Columns added after a database may have been created: added on open.
_ADDED_COLUMNS = (
    ("tasks", "workflow_id", "TEXT"),
    ("tasks", "iteration", "INTEGER NOT NULL DEFAULT 1"),
    ("jobs", "flags", "TEXT NOT NULL DEFAULT '{}'"),
    ("jobs", "stage_in", "INTEGER NOT NULL DEFAULT 0"),
    ("jobs", "output_patterns", "TEXT NOT NULL DEFAULT '[]'"),
    ("jobs", "outputs", "TEXT NOT NULL DEFAULT '[]'"),
    ("jobs", "owner", "TEXT NOT NULL DEFAULT 'local'"),
    ("job_edges", "parent_status", "TEXT"),
)
_FINAL = tuple(str(s) for s in JOB_FINAL)
_JOB_PLACEHOLDERS = ", ".join("?" * len(JOB_COLUMNS.split(", ")))


def _marks(values: Sequence[object]) -> str:
    """`?,?,?` for an SQL `IN (...)` over `values`."""
    return ",".join("?" * len(values))


def _job_row(job: Job) -> tuple[Any, ...]:
    r = job.resources
    return (
        job.id, job.task_id, job.index, str(job.status), job.attempt, job.failures,
        job.max_attempts, job.queue, job.priority, r.memory_mb, r.cores, r.walltime_s,
        json.dumps(job.command), json.dumps(job.inputs), json.dumps(job.env),
        json.dumps(job.parents), job.pilot_id, int(job.kill_requested), job.exit_code,
        job.error_code, job.error_diag, job.log_uri, job.created_at, job.updated_at,
        job.started_at, job.ended_at, json.dumps(job.flags), int(job.stage_in),
        json.dumps(job.output_patterns), json.dumps([jsonable(o) for o in job.outputs]),
        job.owner,
    )  # fmt: skip


def _job(row: sqlite3.Row) -> Job:
    return Job.model_construct(
        id=row["id"],
        task_id=row["task_id"],
        owner=row["owner"],
        index=row["idx"],
        status=JobStatus(row["status"]),
        attempt=row["attempt"],
        failures=row["failures"],
        max_attempts=row["max_attempts"],
        queue=row["queue"],
        priority=row["priority"],
        resources=Resources(
            memory_mb=row["memory_mb"], cores=row["cores"], walltime_s=row["walltime_s"]
        ),
        command=json.loads(row["command"]),
        inputs=json.loads(row["inputs"]),
        env=json.loads(row["env"]),
        parents=json.loads(row["parents"]),
        pilot_id=row["pilot_id"],
        kill_requested=bool(row["kill_requested"]),
        exit_code=row["exit_code"],
        error_code=row["error_code"],
        error_diag=row["error_diag"],
        log_uri=row["log_uri"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        flags=json.loads(row["flags"]),
        stage_in=bool(row["stage_in"]),
        output_patterns=json.loads(row["output_patterns"]),
        outputs=[OutputFile.model_validate(o) for o in json.loads(row["outputs"])],
    )


def _attempt_row(a: Attempt) -> tuple[Any, ...]:
    return (
        a.job_id, a.attempt, a.pilot_id, str(a.status), a.started_at, a.ended_at, a.exit_code,
        a.error_code, a.error_diag, a.log_uri,
    )  # fmt: skip


def _status_or_none(status: JobStatus | None) -> str | None:
    """An edge's recorded parent status: a final one, else None (pending: the parent's release
    records it when it ends)."""
    return str(status) if status is not None and str(status) in _FINAL else None


def _event_row(e: Event, now: float) -> tuple[Any, ...]:
    return (e.id, str(e.type), e.subject, json.dumps(e.data), now)


class SqliteStore:
    """Store port on SQLite. `on_events` is called after a commit that wrote outbox events."""

    def __init__(self, path: Path | str, *, clock: Callable[[], float]) -> None:
        self.path = str(path)
        self._clock = clock
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self.on_events: Callable[[], None] = lambda: None
        self._migrate(self._conn())
        self._conn().executescript(_SCHEMA)

    # -- plumbing -------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=30.0
                )
            except sqlite3.Error as e:
                raise BackendUnavailable(f"cannot open database {self.path}: {e}") from e
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=OFF")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        """Add the columns a database made by an earlier version lacks."""
        for table, column, decl in _ADDED_COLUMNS:
            have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
            if have and column not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction. Exceptions roll back; SQLite errors become BackendUnavailable."""
        db = self._conn()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise BackendUnavailable(f"database busy or unavailable: {e}") from e
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error as e:
            db.execute("ROLLBACK")
            raise BackendUnavailable(f"commit failed: {e}") from e

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise BackendUnavailable(f"database read failed: {e}") from e

    def _emit(self, db: sqlite3.Connection, events: Sequence[Event]) -> bool:
        if not events:
            return False
        now = self._clock()
        db.executemany(
            "INSERT OR IGNORE INTO outbox (id, type, subject, data, created_at) VALUES (?,?,?,?,?)",
            [_event_row(e, now) for e in events],
        )
        return True

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._local = threading.local()

    # -- tasks ----------------------------------------------------------------------------------
    def add_task(self, task: Task, events: Sequence[Event]) -> None:
        with self._tx() as db:
            self._insert_task(db, task)
            emitted = self._emit(db, events)
        if emitted:
            self.on_events()

    @staticmethod
    def _insert_task(db: sqlite3.Connection, task: Task) -> None:
        try:
            db.execute(
                "INSERT INTO tasks (id, name, owner, status, reason, n_jobs, spec, created_at,"
                " updated_at, workflow_id, iteration) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    task.id,
                    task.spec.name,
                    task.owner,
                    str(task.status),
                    task.reason,
                    task.n_jobs,
                    task.spec.model_dump_json(by_alias=True),
                    task.created_at,
                    task.updated_at,
                    task.workflow_id,
                    task.iteration,
                ),
            )
        except sqlite3.IntegrityError as e:
            raise InvalidInput(f"task id {task.id} already exists", task_id=task.id) from e

    def _task(self, row: sqlite3.Row, counts: dict[str, int]) -> Task:
        return Task(
            id=row["id"],
            spec=TaskSpec.model_validate_json(row["spec"]),
            owner=row["owner"],
            status=TaskStatus(row["status"]),
            reason=row["reason"],
            n_jobs=row["n_jobs"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            job_counts=counts,
            workflow_id=row["workflow_id"],
            iteration=row["iteration"],
        )

    def get_task(self, task_id: str, *, counts: bool = True) -> Task:
        rows = self._read("SELECT * FROM tasks WHERE id = ?", (task_id,))
        if not rows:
            raise NotFound(f"no task with id {task_id!r}", task_id=task_id)
        by_status = {str(k): v for k, v in self.job_counts(task_id).items()} if counts else {}
        return self._task(rows[0], by_status)

    def list_tasks(self, *, limit: int = 100) -> list[Task]:
        rows = self._read("SELECT * FROM tasks ORDER BY created_at DESC LIMIT ?", (limit,))
        return [self._task(r, {}) for r in rows]

    def set_task_status(
        self,
        task_id: str,
        expect: Iterable[TaskStatus],
        to: TaskStatus,
        *,
        reason: str = "",
        events: Sequence[Event] = (),
    ) -> bool:
        expected = [str(s) for s in expect if advance(s, to)]
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE tasks SET status = ?, reason = ?, updated_at = ? "
                f"WHERE id = ? AND status IN ({_marks(expected)})",
                (str(to), reason, self._clock(), task_id, *expected),
            )
            won = cur.rowcount == 1
            emitted = won and self._emit(db, events)
        if emitted:
            self.on_events()
        return won

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
        advance(expect, to)
        ended = parent_status or {}
        with self._tx() as db:
            cur = db.execute(
                "UPDATE tasks SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
                (str(to), self._clock(), task_id, str(expect)),
            )
            if cur.rowcount != 1:
                return False  # lost the compare-and-set: nothing was written
            n = 0
            batch: list[tuple[Any, ...]] = []
            edges: list[tuple[str, str, str | None]] = []
            for job in jobs:
                batch.append(_job_row(job))
                edges.extend((p, job.id, _status_or_none(ended.get(p))) for p in job.parents)
                if len(batch) >= _INSERT_CHUNK:
                    n += self._insert_jobs(db, batch, edges)
                    batch, edges = [], []
            n += self._insert_jobs(db, batch, edges)
            db.execute("UPDATE tasks SET n_jobs = ? WHERE id = ?", (n, task_id))
            emitted = self._emit(db, events)
        if emitted:
            self.on_events()
        return True

    @staticmethod
    def _insert_jobs(
        db: sqlite3.Connection,
        rows: list[tuple[Any, ...]],
        edges: list[tuple[str, str, str | None]],
    ) -> int:
        db.executemany(f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({_JOB_PLACEHOLDERS})", rows)
        db.executemany(
            "INSERT OR IGNORE INTO job_edges (parent, child, parent_status) VALUES (?, ?, ?)", edges
        )
        return len(rows)

    def job_counts(self, task_id: str) -> dict[JobStatus, int]:
        rows = self._read(
            "SELECT status, count(*) AS n FROM jobs WHERE task_id = ? GROUP BY status", (task_id,)
        )
        return {JobStatus(r["status"]): r["n"] for r in rows}

    def has_unended_jobs(self, task_id: str) -> bool:
        unended = [str(s) for s in JobStatus if s not in JOB_FINAL]
        rows = self._read(
            f"SELECT 1 FROM jobs WHERE task_id = ? AND status IN ({_marks(unended)}) LIMIT 1",
            (task_id, *unended),
        )
        return bool(rows)

    def abort_task(self, task_id: str, reason: str) -> Task:
        task = self.get_task(task_id)
        advance(task.status, TaskStatus.ABORTED)
        now = self._clock()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE tasks SET status = ?, reason = ?, updated_at = ? "
                "WHERE id = ? AND status = ?",
                (str(TaskStatus.ABORTED), reason, now, task_id, str(task.status)),
            )
            if cur.rowcount != 1:
                raise Conflict(f"task {task_id} changed while being killed; try again")
            db.execute(
                "UPDATE jobs SET status = ?, error_diag = ?, updated_at = ?, ended_at = ? "
                "WHERE task_id = ? AND status IN (?, ?)",
                (str(JobStatus.CANCELLED), reason, now, now, task_id,
                 str(JobStatus.DEFINED), str(JobStatus.ACTIVATED)),
            )  # fmt: skip
            live = [str(s) for s in JOB_LIVE]
            db.execute(
                f"UPDATE jobs SET kill_requested = 1, updated_at = ? "
                f"WHERE task_id = ? AND status IN ({_marks(live)})",
                (now, task_id, *live),
            )
        return self.get_task(task_id)

    def place_task(self, task_id: str, spec: TaskSpec, events: Sequence[Event]) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE tasks SET spec = ?, reason = '', updated_at = ? "
                "WHERE id = ? AND status = ?",
                (spec.model_dump_json(by_alias=True), self._clock(), task_id,
                 str(TaskStatus.REGISTERED)),
            )  # fmt: skip
            won = cur.rowcount == 1
            emitted = won and self._emit(db, events)
        if emitted:
            self.on_events()
        return won

    def count_jobs_above_memory(self, task_id: str, memory_mb: int) -> int:
        rows = self._read(
            "SELECT count(*) AS n FROM jobs WHERE task_id = ? AND memory_mb > ?",
            (task_id, memory_mb),
        )
        return int(rows[0]["n"])

    def raise_queued_memory(self, task_id: str, memory_mb: int) -> int:
        queued = [str(s) for s in JOB_QUEUED]
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE jobs SET memory_mb = ?, updated_at = ? WHERE task_id = ? "
                f"AND memory_mb < ? AND status IN ({_marks(queued)})",
                (memory_mb, self._clock(), task_id, memory_mb, *queued),
            )
            return cur.rowcount

    def pause_jobs(self, task_id: str) -> int:
        advance(JobStatus.ACTIVATED, JobStatus.DEFINED)
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET status = ?, updated_at = ? WHERE task_id = ? AND status = ?",
                (str(JobStatus.DEFINED), self._clock(), task_id, str(JobStatus.ACTIVATED)),
            )
            return cur.rowcount

    def resume_jobs(self, task_id: str) -> int:
        advance(JobStatus.DEFINED, JobStatus.ACTIVATED)
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET status = ?, updated_at = ? WHERE task_id = ? AND status = ? "
                "AND NOT EXISTS (SELECT 1 FROM job_edges WHERE child = jobs.id "
                "AND parent_status IS NULL)",
                (str(JobStatus.ACTIVATED), self._clock(), task_id, str(JobStatus.DEFINED)),
            )
            return cur.rowcount

    def finish_task(self, task_id: str, reason: str, *, hard: bool) -> int:
        for s in JOB_QUEUED:
            advance(s, JobStatus.CLOSED)
        queued = [str(s) for s in JOB_QUEUED]
        live = [str(s) for s in JOB_LIVE]
        now = self._clock()
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE jobs SET status = ?, error_diag = ?, updated_at = ?, ended_at = ? "
                f"WHERE task_id = ? AND status IN ({_marks(queued)})",
                (str(JobStatus.CLOSED), reason, now, now, task_id, *queued),
            )
            if hard:
                db.execute(
                    f"UPDATE jobs SET kill_requested = 1, updated_at = ? "
                    f"WHERE task_id = ? AND status IN ({_marks(live)})",
                    (now, task_id, *live),
                )
            return cur.rowcount

    def reassign_jobs(self, task_id: str, *, queue: str | None, priority: int | None) -> int:
        queued = [str(s) for s in JOB_QUEUED]
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE jobs SET queue = coalesce(?, queue), priority = coalesce(?, priority), "
                f"updated_at = ? WHERE task_id = ? AND status IN ({_marks(queued)})",
                (queue, priority, self._clock(), task_id, *queued),
            )
            return cur.rowcount

    def task_flags(self, task_id: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        rows = self._read(
            "SELECT flags FROM jobs WHERE task_id = ? AND status = ? AND flags != '{}'",
            (task_id, str(JobStatus.FINISHED)),
        )
        for r in rows:
            for k, v in json.loads(r["flags"]).items():
                out.setdefault(k, set()).add(v)
        return out

    # -- workflows ------------------------------------------------------------------------------
    def add_workflow(
        self, workflow: Workflow, tasks: Sequence[Task], events: Sequence[Event]
    ) -> None:
        with self._tx() as db:
            try:
                db.execute(
                    "INSERT INTO workflows (id, name, owner, status, reason, spec, created_at, "
                    "updated_at) VALUES (?,?,?,?,?,?,?,?)",
                    (workflow.id, workflow.spec.name, workflow.owner, str(workflow.status),
                     workflow.reason, workflow.spec.model_dump_json(by_alias=True),
                     workflow.created_at, workflow.updated_at),
                )  # fmt: skip
            except sqlite3.IntegrityError as e:
                raise InvalidInput(f"workflow id {workflow.id} already exists") from e
            for task in tasks:
                self._insert_task(db, task)
            emitted = self._emit(db, events)
        if emitted:
            self.on_events()

    @staticmethod
    def _workflow(row: sqlite3.Row) -> Workflow:
        return Workflow(
            id=row["id"],
            spec=WorkflowSpec.model_validate_json(row["spec"]),
            owner=row["owner"],
            status=WorkflowStatus(row["status"]),
            reason=row["reason"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def get_workflow(self, workflow_id: str) -> Workflow:
        rows = self._read("SELECT * FROM workflows WHERE id = ?", (workflow_id,))
        if not rows:
            raise NotFound(f"no workflow with id {workflow_id!r}", workflow_id=workflow_id)
        return self._workflow(rows[0])

    def list_workflows(self, *, limit: int = 100) -> list[Workflow]:
        rows = self._read("SELECT * FROM workflows ORDER BY created_at DESC LIMIT ?", (limit,))
        return [self._workflow(r) for r in rows]

    def set_workflow_status(
        self,
        workflow_id: str,
        expect: Iterable[WorkflowStatus],
        to: WorkflowStatus,
        *,
        reason: str = "",
    ) -> bool:
        expected = [str(s) for s in expect if advance(s, to)]
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE workflows SET status = ?, reason = ?, updated_at = ? "
                f"WHERE id = ? AND status IN ({_marks(expected)})",
                (str(to), reason, self._clock(), workflow_id, *expected),
            )
            return cur.rowcount == 1

    def workflow_tasks(self, workflow_id: str) -> list[Task]:
        rows = self._read(
            "SELECT * FROM tasks WHERE workflow_id = ? ORDER BY created_at, iteration, name",
            (workflow_id,),
        )
        return [self._task(r, {}) for r in rows]

    # -- job dependencies -----------------------------------------------------------------------
    def release_children(self, parent_ids: Sequence[str]) -> dict[str, ParentsState]:
        children: dict[str, ParentsState] = {}
        # Most ended jobs have no children (plain tasks, sinks): find the parents that do with
        # one read, and take the write lock only for those.
        ids = list(dict.fromkeys(parent_ids))
        with_edges: list[str] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self._read(
                f"SELECT DISTINCT parent FROM job_edges WHERE parent IN ({_marks(chunk)})", chunk
            )
            with_edges.extend(r["parent"] for r in rows)
        if not with_edges:
            return children
        with self._tx() as db:
            for pid in with_edges:
                row = db.execute("SELECT status FROM jobs WHERE id = ?", (pid,)).fetchone()
                if row is None or row["status"] not in _FINAL:
                    continue
                db.execute(
                    "UPDATE job_edges SET parent_status = ? WHERE parent = ?", (row["status"], pid)
                )
                for (child,) in db.execute(
                    "SELECT child FROM job_edges WHERE parent = ?", (pid,)
                ).fetchall():
                    children[child] = ParentsState(False)  # filled in below
            for child in children:
                pending = db.execute(
                    "SELECT 1 FROM job_edges WHERE child = ? AND parent_status IS NULL LIMIT 1",
                    (child,),
                ).fetchone()
                failed = db.execute(
                    "SELECT parent FROM job_edges WHERE child = ? AND parent_status IS NOT NULL "
                    "AND parent_status != ? LIMIT 3",
                    (child, str(JobStatus.FINISHED)),
                ).fetchall()
                children[child] = ParentsState(pending is not None, tuple(r[0] for r in failed))
        return children

    def release_roots(self, task_id: str, now: float) -> int:
        advance(JobStatus.DEFINED, JobStatus.ACTIVATED)
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET status = ?, updated_at = ? WHERE task_id = ? AND status = ? "
                "AND NOT EXISTS (SELECT 1 FROM job_edges WHERE child = jobs.id)",
                (str(JobStatus.ACTIVATED), now, task_id, str(JobStatus.DEFINED)),
            )
            return cur.rowcount

    def retry_jobs(self, task_id: str, now: float) -> int:
        for s in (JobStatus.FAILED, JobStatus.CANCELLED):
            advance(s, JobStatus.DEFINED)
            advance(s, JobStatus.ACTIVATED)
        ended = (str(JobStatus.FAILED), str(JobStatus.CANCELLED))
        with self._tx() as db:
            ids = [
                r["id"]
                for r in db.execute(
                    "SELECT id FROM jobs WHERE task_id = ? AND status IN (?, ?)", (task_id, *ended)
                )
            ]
            if not ids:
                return 0
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                db.execute(
                    f"UPDATE jobs SET status = ?, attempt = attempt + 1, failures = 0, "
                    f"pilot_id = NULL, kill_requested = 0, exit_code = NULL, error_code = NULL, "
                    f"error_diag = '', log_uri = NULL, started_at = NULL, ended_at = NULL, "
                    f"flags = '{{}}', updated_at = ? WHERE id IN ({_marks(chunk)})",
                    (str(JobStatus.DEFINED), now, *chunk),
                )
                db.execute(
                    f"UPDATE job_edges SET parent_status = NULL WHERE parent IN ({_marks(chunk)})",
                    chunk,
                )
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                db.execute(
                    f"UPDATE jobs SET status = ? WHERE id IN ({_marks(chunk)}) AND NOT EXISTS "
                    f"(SELECT 1 FROM job_edges WHERE child = jobs.id AND parent_status IS NULL)",
                    (str(JobStatus.ACTIVATED), *chunk),
                )
        return len(ids)

    # -- jobs -----------------------------------------------------------------------------------
    def get_job(self, job_id: str) -> Job:
        rows = self._read(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise NotFound(f"no job with id {job_id!r}", job_id=job_id)
        return _job(rows[0])

    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Job]:
        out: dict[str, Job] = {}
        ids = list(dict.fromkeys(job_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self._read(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE id IN ({_marks(chunk)})", chunk
            )
            out.update((r["id"], _job(r)) for r in rows)
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
        return [_job(r) for r in rows]

    def attempts(self, job_id: str) -> list[Attempt]:
        rows = self._read("SELECT * FROM attempts WHERE job_id = ? ORDER BY attempt", (job_id,))
        return [
            Attempt(**{k: r[k] for k in r.keys() if k != "status"}, status=JobStatus(r["status"]))  # noqa: SIM118
            for r in rows
        ]

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
                f"UPDATE jobs SET status = ?, pilot_id = ?, updated_at = ?, started_at = ?, "
                f"exit_code = NULL, error_code = NULL, error_diag = '', log_uri = NULL, "
                f"ended_at = NULL WHERE id IN (SELECT id FROM jobs WHERE queue = ? AND "
                f"status = ? {mine}AND memory_mb <= ? AND cores <= ? "
                f"ORDER BY priority DESC, created_at, idx LIMIT ?) RETURNING {JOB_COLUMNS}",
                (str(JobStatus.SENT), pilot_id, now, now, queue, str(JobStatus.ACTIVATED),
                 *args, capacity.memory_mb, capacity.cores, n),
            ).fetchall()  # fmt: skip
            jobs = sorted(
                (_job(r) for r in rows), key=lambda j: (-j.priority, j.created_at, j.index)
            )
            db.executemany(
                _UPSERT_ATTEMPT,
                [
                    _attempt_row(
                        Attempt(
                            job_id=j.id,
                            attempt=j.attempt,
                            pilot_id=pilot_id,
                            status=JobStatus.SENT,
                            started_at=now,
                        )
                    )
                    for j in jobs
                ],
            )
        return jobs

    def owner_loads(self, queue: str) -> dict[str, OwnerLoad]:
        live = [str(s) for s in JOB_LIVE]
        running = {
            r["owner"]: r["n"]
            for r in self._read(
                f"SELECT owner, count(*) AS n FROM jobs WHERE queue = ? "
                f"AND status IN ({_marks(live)}) GROUP BY owner",
                (queue, *live),
            )
        }
        # Owners with jobs waiting: a skip scan of the (queue, owner) dispatch index, one seek
        # per owner, instead of DISTINCT over every activated job of the queue.
        activated = str(JobStatus.ACTIVATED)
        waiting_owners = [
            r["owner"]
            for r in self._read(
                "WITH RECURSIVE o(owner) AS ("
                " SELECT min(owner) FROM jobs WHERE queue = ?1 AND status = ?2"
                " UNION ALL SELECT (SELECT min(owner) FROM jobs WHERE queue = ?1 AND status = ?2"
                " AND owner > o.owner) FROM o WHERE o.owner IS NOT NULL"
                ") SELECT owner FROM o WHERE owner IS NOT NULL",
                (queue, activated),
            )
        ]
        loads: dict[str, OwnerLoad] = {}
        for owner in waiting_owners:
            (count,) = self._read(
                "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE queue = ? AND owner = ? "
                "AND status = ? LIMIT ?)",
                (queue, owner, activated, WAITING_COUNT_CAP),
            )[0]
            loads[owner] = OwnerLoad(running.get(owner, 0), int(count))
        for owner, n in running.items():
            loads.setdefault(owner, OwnerLoad(n, 0))
        return loads

    def apply_job_changes(self, changes: Sequence[JobChange]) -> list[bool]:
        results: list[bool] = []
        emitted = False
        set_cols = ", ".join(f"{c} = ?" for c in JOB_COLUMNS.split(", ")[1:])
        with self._tx() as db:
            for ch in changes:
                if ch.before.status != ch.after.status:
                    advance(ch.before.status, ch.after.status)
                # The kill flag is compared too: a change computed before a kill was requested
                # must lose, not write the flag back to false.
                cur = db.execute(
                    f"UPDATE jobs SET {set_cols} "
                    f"WHERE id = ? AND status = ? AND attempt = ? AND kill_requested = ?",
                    (
                        *_job_row(ch.after)[1:],
                        ch.before.id,
                        str(ch.before.status),
                        ch.before.attempt,
                        int(ch.before.kill_requested),
                    ),
                )
                won = cur.rowcount == 1
                results.append(won)
                if not won:
                    continue
                if ch.attempt is not None:
                    db.execute(
                        _UPSERT_ATTEMPT,
                        _attempt_row(ch.attempt),
                    )
                emitted = self._emit(db, ch.events) or emitted
        if emitted:
            self.on_events()
        return results

    def live_jobs_of_pilot(self, pilot_id: str) -> list[Job]:
        live = [str(s) for s in JOB_LIVE]
        rows = self._read(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE pilot_id = ? AND status IN ({_marks(live)})",
            (pilot_id, *live),
        )
        return [_job(r) for r in rows]

    def jobs_to_kill(self, pilot_id: str) -> list[str]:
        # Asked on every heartbeat and update reply: ids only, no job decoded.
        live = [str(s) for s in JOB_LIVE]
        rows = self._read(
            f"SELECT id FROM jobs WHERE pilot_id = ? AND status IN ({_marks(live)}) "
            f"AND kill_requested = 1",
            (pilot_id, *live),
        )
        return [r["id"] for r in rows]

    # -- queues ---------------------------------------------------------------------------------
    def put_queue(self, queue: Queue) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO queues (name, spec) VALUES (?, ?)",
                (queue.name, queue.model_dump_json(by_alias=True)),
            )

    def get_queue(self, name: str) -> Queue:
        rows = self._read("SELECT spec FROM queues WHERE name = ?", (name,))
        if not rows:
            raise NotFound(f"no queue named {name!r}", queue=name)
        return Queue.model_validate_json(rows[0]["spec"])

    def list_queues(self) -> list[Queue]:
        return [
            Queue.model_validate_json(r["spec"])
            for r in self._read("SELECT spec FROM queues ORDER BY name")
        ]

    def count_activated(self, queue: str) -> int:
        rows = self._read(
            "SELECT count(*) AS n FROM jobs WHERE queue = ? AND status = ?",
            (queue, str(JobStatus.ACTIVATED)),
        )
        return int(rows[0]["n"])

    def list_activated(self, queue: str, limit: int) -> list[Job]:
        rows = self._read(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE queue = ? AND status = ? "
            f"ORDER BY priority DESC, created_at, idx LIMIT ?",
            (queue, str(JobStatus.ACTIVATED), limit),
        )
        return [_job(r) for r in rows]

    def note_scaling(self, queue: str, note: str, at: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO scaler_notes (queue, note, at) VALUES (?, ?, ?)",
                (queue, note, at),
            )

    def scaling_notes(self) -> dict[str, tuple[str, float]]:
        rows = self._read("SELECT queue, note, at FROM scaler_notes")
        return {r["queue"]: (r["note"], r["at"]) for r in rows}

    # -- pilots ---------------------------------------------------------------------------------
    def add_pilot(self, pilot: Pilot) -> None:
        with self._tx() as db:
            try:
                db.execute(
                    "INSERT INTO pilots (id, queue, status, record, heard_at, heartbeat_at) "
                    "VALUES (?,?,?,?,?,?)",
                    (pilot.id, pilot.queue, str(pilot.status), pilot.model_dump_json(),
                     pilot.heartbeat_at or pilot.created_at, pilot.heartbeat_at),
                )  # fmt: skip
            except sqlite3.IntegrityError as e:
                raise InvalidInput(f"pilot id {pilot.id} already exists", pilot_id=pilot.id) from e

    def _pilot(self, row: sqlite3.Row) -> Pilot:
        pilot = Pilot.model_validate_json(row["record"])
        return pilot.model_copy(update={"heartbeat_at": row["heartbeat_at"]})

    def get_pilot(self, pilot_id: str) -> Pilot:
        rows = self._read("SELECT * FROM pilots WHERE id = ?", (pilot_id,))
        if not rows:
            raise NotFound(f"no pilot with id {pilot_id!r}", pilot_id=pilot_id)
        return self._pilot(rows[0])

    def update_pilot(self, pilot: Pilot, expect: Iterable[PilotStatus]) -> bool:
        expected = [str(s) for s in expect]
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE pilots SET status = ?, record = ? "
                f"WHERE id = ? AND status IN ({_marks(expected)})",
                (str(pilot.status), pilot.model_dump_json(), pilot.id, *expected),
            )
            return cur.rowcount == 1

    def heartbeat(self, pilot_id: str, now: float) -> Pilot | None:
        final = [str(s) for s in PILOT_FINAL]
        with self._tx() as db:
            row = db.execute(
                f"UPDATE pilots SET heard_at = ?, heartbeat_at = ? "
                f"WHERE id = ? AND status NOT IN ({_marks(final)}) RETURNING *",
                (now, now, pilot_id, *final),
            ).fetchone()
            return None if row is None else self._pilot(row)

    def list_pilots(self, *, queue: str | None = None, live: bool = False) -> list[Pilot]:
        where, args = ["1 = 1"], []
        if queue is not None:
            where.append("queue = ?")
            args.append(queue)
        if live:
            states = [str(s) for s in PILOT_LIVE]
            where.append(f"status IN ({_marks(states)})")
            args.extend(states)
        rows = self._read(f"SELECT * FROM pilots WHERE {' AND '.join(where)} ORDER BY rowid", args)
        return [self._pilot(r) for r in rows]

    def count_failed_pilots(self, queue: str, since: float) -> int:
        rows = self._read(
            "SELECT count(*) AS n FROM pilots WHERE queue = ? AND status IN (?, ?) "
            "AND json_extract(record, '$.ended_at') >= ?",
            (queue, str(PilotStatus.MISSED), str(PilotStatus.FAILED), since),
        )
        return int(rows[0]["n"])

    def silent_pilots(self, queue: str, heard_before: float) -> list[Pilot]:
        states = [str(s) for s in PILOT_LIVE]
        rows = self._read(
            f"SELECT * FROM pilots WHERE queue = ? AND heard_at < ? "
            f"AND status IN ({_marks(states)})",
            (queue, heard_before, *states),
        )
        return [self._pilot(r) for r in rows]

    # -- outbox ---------------------------------------------------------------------------------
    def add_events(self, events: Sequence[Event]) -> None:
        with self._tx() as db:
            emitted = self._emit(db, events)
        if emitted:
            self.on_events()

    def pending_events(self, limit: int) -> list[StoredEvent]:
        rows = self._read(
            "SELECT seq, id, type, subject, data, tries FROM outbox "
            "WHERE delivered_at IS NULL AND dead = 0 ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [
            StoredEvent(
                seq=r["seq"],
                event=Event(
                    id=r["id"],
                    type=EventType(r["type"]),
                    subject=r["subject"],
                    data=json.loads(r["data"]),
                ),
                tries=r["tries"],
            )
            for r in rows
        ]

    def mark_delivered(self, seqs: Sequence[int], now: float) -> None:
        if not seqs:
            return
        with self._tx() as db:
            db.executemany(
                "UPDATE outbox SET delivered_at = ?, tries = tries + 1 WHERE seq = ?",
                [(now, s) for s in seqs],
            )

    def mark_failed(self, seq: int, error: str, *, dead: bool) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET tries = tries + 1, error = ?, dead = ? WHERE seq = ?",
                (error[:2000], int(dead), seq),
            )

    def dead_events(self) -> list[tuple[str, str]]:
        """(event id, error) of events parked after failing delivery: for `skypanda doctor`."""
        return [
            (r["id"], r["error"]) for r in self._read("SELECT id, error FROM outbox WHERE dead = 1")
        ]
