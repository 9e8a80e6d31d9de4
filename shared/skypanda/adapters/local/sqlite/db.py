"""The SQLite plumbing every aggregate's rows share: per-thread connections, the schema and
its migrations, write transactions, the outbox writer, and the row codecs.

Every write runs in a `BEGIN IMMEDIATE` transaction, so writers queue on SQLite's own lock
instead of failing half-way; compare-and-set is a `WHERE status = ?` on the UPDATE. Events go
to the `outbox` table in the same transaction as the change that caused them (`emit`), so an
event exists iff its change committed. Connections are per thread (sqlite3 objects must not be
shared across threads).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources
from json.encoder import encode_basestring_ascii as _json_str
from pathlib import Path
from typing import Any

from skypanda.adapters.local.sqlite import keys, rollups
from skypanda.adapters.local.sqlite.specs import TASK_SPECS
from skypanda.domain.errors import BackendUnavailable, InvalidInput
from skypanda.domain.events import Event, EventType
from skypanda.domain.models import Attempt, Job, OutputFile, Resources, Task, jsonable
from skypanda.domain.records import job_of_values
from skypanda.domain.states import JOB_FINAL, JobStatus, TaskStatus

SCHEMA = resources.files("skypanda.adapters.local.sqlite").joinpath("schema.sql").read_text()

JOB_COLUMNS = (
    "id, task_id, idx, status, attempt, failures, max_attempts, queue, priority, memory_mb, "
    "cores, walltime_s, command, inputs, env, parents, pilot_id, kill_requested, exit_code, "
    "error_code, error_diag, log_uri, created_at, updated_at, started_at, ended_at, flags, "
    "stage_in, output_patterns, outputs, owner, max_rss_mb, activated_at"
)
JOB_PLACEHOLDERS = ", ".join("?" * len(JOB_COLUMNS.split(", ")))
UPSERT_ATTEMPT = (
    "INSERT OR REPLACE INTO attempts (job, job_id, attempt, pilot_id, status, started_at, "
    "ended_at, exit_code, error_code, error_diag, log_uri, max_rss_mb) VALUES ((SELECT rowid "
    "FROM jobs WHERE id = ?1), ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
)
"""An attempt at its job's key (keys.py), from `attempt_row`'s values."""
ATTEMPT_COLUMNS = (
    "job_id, attempt, pilot_id, status, started_at, ended_at, exit_code, error_code, "
    "error_diag, log_uri, max_rss_mb"
)
CAS_ROWS = 256
"""Job changes per compare-and-set `UPDATE` (35 bound values each: well under SQLite's limit).
A batch is padded to a power of two rows (`cas_size`), so few statements are ever compiled."""
CAS_PAD = (None,) * (len(JOB_COLUMNS.split(", ")) + 3)
"""A padding row of `cas_update`: its NULL id matches no job."""
FINAL = tuple(str(s) for s in JOB_FINAL)
ACTIVATED = EventType.JOBS_ACTIVATED
BUSY_TIMEOUT_S = 30.0
"""How long a write waits for its turn (other writers of this process, then SQLite's lock)."""
WRITER_STATEMENTS = 1024
"""Prepared statements the writer connection keeps (`SqliteDb._writer`)."""
CHUNK = 500
"""Ids per `IN (...)` (well under SQLite's limit on bound parameters)."""

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
    ("outbox", "resent_at", "REAL"),
    ("workflows", "waits_on", "TEXT"),
    ("jobs", "max_rss_mb", "INTEGER"),
    ("attempts", "max_rss_mb", "INTEGER"),
    ("webhooks", "subject", "TEXT"),
    ("jobs", "activated_at", "REAL"),
)


def _nothing() -> None:
    pass


def marks(values: Sequence[object]) -> str:
    """`?,?,?` for an SQL `IN (...)` over `values`."""
    return ",".join("?" * len(values))


@lru_cache(maxsize=16)
def cas_update(n: int) -> str:
    """One `UPDATE` that writes `n` jobs compare-and-set, and returns the ids it wrote. Its
    values: per job, JOB_COLUMNS' (the new row, id first), then the stored status, attempt and
    kill flag it expects (a change computed before a kill was requested must lose, not write
    the flag back to false). The ids must be distinct (one row of `c` per job).

    One statement for all of them, rather than one per job: the triggers on `jobs` (rollups,
    metrics) make each statement keep a statement journal, which spills to temporary files;
    set-based, each page is journaled once per statement instead of once per job."""
    cols = JOB_COLUMNS.split(", ")
    row = "(" + ",".join("?" * (len(cols) + 3)) + ")"
    return (
        f"WITH c({', '.join(cols)}, was_status, was_attempt, was_kill) AS "
        f"(VALUES {','.join([row] * n)}) "
        f"UPDATE jobs SET {', '.join(f'{col} = c.{col}' for col in cols[1:])} FROM c "
        f"WHERE jobs.id = c.id AND jobs.status = c.was_status AND jobs.attempt = c.was_attempt "
        f"AND jobs.kill_requested = c.was_kill RETURNING jobs.id"
    )


def cas_size(n: int) -> int:
    """The rows of the `cas_update` that takes `n` changes (n <= CAS_ROWS)."""
    return 1 << (n - 1).bit_length()


def chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    """`ids` in slices of CHUNK, for `IN (...)` lists."""
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


class SqliteDb:
    """Connections, transactions and the outbox writer; the aggregates' mixins build on it.
    `on_events` is called after a commit that wrote outbox events."""

    def __init__(self, path: Path | str, *, clock: Callable[[], float]) -> None:
        self.path = str(path)
        if self.path != ":memory:" and not os.path.exists(self.path):
            # Private from the start: SQLite gives its -wal and -shm files the same mode.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._clock = clock
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        # Writers of this process queue here rather than on SQLite's busy handler, which
        # sleeps 1, 2, 5, 10... ms between tries: milliseconds on every contended commit.
        self._writing = threading.Lock()
        self._write_conn: sqlite3.Connection | None = None  # `_writer`, opened on first use
        self.on_events = _nothing
        # Called instead of `on_events` after a commit whose events are all `lazy_events`
        # (None: `on_events`): the router may wait a little for others (`Router.nudge_soon`).
        self.on_lazy_events: Callable[[], None] | None = None
        self.lazy_events: frozenset[EventType] = frozenset()
        # Called after a commit that activated jobs, with how many per queue (a long-poll's
        # doorbell: one wake per job).
        self.on_activated: Callable[[dict[str, int]], None] = lambda queues: None
        self._migrate(self._conn())
        uncounted = rollups.missing(self._conn())
        self._conn().executescript(SCHEMA)
        keys.migrate(self._conn(), SCHEMA)  # earlier versions' edges and attempts
        rollups.install(self._conn(), backfill=uncounted)  # ends per minute, by triggers

    @property
    def on_events(self) -> Callable[[], None]:
        """Called after a commit that wrote outbox events (`on_lazy_events` where all that the
        thread's last transaction wrote are `lazy_events`). Inside an `atomic` scope it does
        nothing: the scope calls it once, after its own commit (the outbox's reader would
        find nothing before)."""
        local = self._local
        if getattr(local, "depth", 0):
            return _nothing
        if self.on_lazy_events is not None and getattr(local, "lazy", False):
            return self.on_lazy_events
        return self._on_events

    @on_events.setter
    def on_events(self, hook: Callable[[], None]) -> None:
        self._on_events = hook

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection: the writer while it is in a write transaction (its reads
        then see its own writes), else its own, for reads."""
        if getattr(self._local, "depth", 0):
            return self._writer
        return self._own()

    def _own(self) -> sqlite3.Connection:
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = self._open()
        return conn

    def _open(self, statements: int = 128) -> sqlite3.Connection:
        """A connection; `statements`: how many prepared statements it keeps."""
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False,
                timeout=BUSY_TIMEOUT_S, cached_statements=statements,
            )  # fmt: skip
        except sqlite3.Error as e:
            raise BackendUnavailable(f"cannot open database {self.path}: {e}") from e
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=OFF")
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    @property
    def _writer(self) -> sqlite3.Connection:
        """The one connection every write transaction of this process runs on, by turns
        (`_writing`). One, not one per thread: SQLite drops a connection's whole page cache
        when it finds that another connection has committed since its last transaction, so
        with each thread writing on its own connection, every write transaction read each
        page it touched again (a chain's link, whose transactions alternate between request
        threads and the router, did so in every one). Its own commits keep its cache, and
        its prepared statements, warm: it keeps WRITER_STATEMENTS of them (every write path's
        statements share it: with the default 128, a fan-in's many batch sizes and the router's
        statements evicted each other, and each was compiled again, a link's release and
        claim with their triggers). Used only with `_writing` held. (In memory, each
        connection is a database of its own: the thread's own is the one.)"""
        if self.path == ":memory:":
            return self._own()
        conn = self._write_conn
        if conn is None:
            conn = self._write_conn = self._open(WRITER_STATEMENTS)
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
        """A write transaction. Exceptions roll back; SQLite errors become BackendUnavailable.
        Inside another (`atomic`), it is part of the outer one: it commits with it, and an
        error in it undoes the whole scope, or the innermost `atomic` within it (a savepoint),
        which is what a scope that catches errors of its writes and goes on must use. No
        savepoint of its own: a report and its release were ten more statements."""
        local = self._local
        if getattr(local, "depth", 0):
            local.scoped = True
            yield self._writer
            return
        if not self._writing.acquire(timeout=BUSY_TIMEOUT_S):
            raise BackendUnavailable(f"database busy: no write turn in {BUSY_TIMEOUT_S:g} s")
        try:
            yield from self._transaction(self._writer)
        finally:
            self._writing.release()
        waiting = {queue: n for queue, n in local.activated.items() if n > 0}
        if waiting:
            self.on_activated(waiting)
        if local.emitted and local.scoped:  # the writes of a scope did not call it themselves
            self.on_events()

    def _transaction(self, db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        local = self._local
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise BackendUnavailable(f"database busy or unavailable: {e}") from e
        local.depth, local.activated, local.emitted, local.scoped = 1, {}, False, False
        local.lazy = True  # until it writes an event that is not lazy (`_emit`)
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            local.depth = 0
        try:
            db.execute("COMMIT")
        except sqlite3.Error as e:
            db.execute("ROLLBACK")
            raise BackendUnavailable(f"commit failed: {e}") from e

    @contextmanager
    def _savepoint(self, db: sqlite3.Connection) -> Iterator[None]:
        local = self._local
        name = f"sp{local.depth}"
        local.scoped = True
        db.execute(f"SAVEPOINT {name}")
        local.depth += 1
        try:
            yield
        except BaseException:
            db.execute(f"ROLLBACK TO {name}")
            db.execute(f"RELEASE {name}")
            raise
        finally:
            local.depth -= 1
        db.execute(f"RELEASE {name}")

    @contextmanager
    def atomic(self) -> Iterator[bool]:
        """Every write inside commits in one transaction (JobStore.atomic). Inside another,
        it is a savepoint: an error in it undoes its own writes, and the outer scope may go on."""
        if getattr(self._local, "depth", 0):
            with self._savepoint(self._conn()):
                yield True
            return
        with self._tx():
            yield True

    def _activated(self, queues: Iterable[str]) -> None:
        """Note, in a write transaction, that a job was activated on each of `queues` (a
        queue once per job): `on_activated` hears of the queues after the commit, those with
        jobs left that the transaction did not claim itself (`_claimed`)."""
        counts: dict[str, int] = self._local.activated
        for queue in queues:
            counts[queue] = counts.get(queue, 0) + 1

    def _claimed(self, queue: str, n: int) -> None:
        """Note, in a write transaction, that it claimed `n` jobs of `queue`."""
        counts: dict[str, int] = self._local.activated
        if queue in counts:
            counts[queue] -= n

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise BackendUnavailable(f"database read failed: {e}") from e

    def _emit(self, db: sqlite3.Connection, events: Sequence[Event]) -> bool:
        """Write `events` to the outbox in `db`'s transaction; whether there were any (the
        caller then calls `on_events` after the commit)."""
        if not events:
            return False
        now = self._clock()
        self._local.emitted = True
        if not self.lazy_events.issuperset(e.type for e in events):
            self._local.lazy = False
        counts: dict[str, int] = self._local.activated
        for e in events:  # the same activations as the job writes' (which come first), or more
            if e.type is ACTIVATED:
                queue = e.data["queue"]
                counts[queue] = max(counts.get(queue, 0), int(e.data.get("count") or 0), 1)
        db.executemany(
            "INSERT OR IGNORE INTO outbox (id, type, subject, data, created_at) VALUES (?,?,?,?,?)",
            [(e.id, str(e.type), e.subject, json.dumps(e.data), now) for e in events],
        )
        return True

    def _set_status(
        self,
        table: str,
        row_id: str,
        expected: Sequence[str],
        to: str,
        reason: str,
        events: Sequence[Event],
    ) -> bool:
        """Compare-and-set the status of one row of `table` (tasks, workflows): `to` if it is
        in `expected`, with `events` in the same commit. Whether it won."""
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE {table} SET status = ?, reason = ?, updated_at = ? "
                f"WHERE id = ? AND status IN ({marks(expected)})",
                (to, reason, self._clock(), row_id, *expected),
            )
            won = cur.rowcount == 1
            emitted = won and self._emit(db, events)
        if emitted:
            self.on_events()
        return won

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._write_conn = None
        self._local = threading.local()


# --- row codecs ---------------------------------------------------------------------------------


def job_row(job: Job) -> tuple[Any, ...]:
    """A job as the values of JOB_COLUMNS."""
    r = job.resources
    return (
        job.id, job.task_id, job.index, str(job.status), job.attempt, job.failures,
        job.max_attempts, job.queue, job.priority, r.memory_mb, r.cores, r.walltime_s,
        _dump(job.command), _dump(job.inputs), _dump(job.env), _dump(job.parents),
        job.pilot_id, int(job.kill_requested), job.exit_code, job.error_code, job.error_diag,
        job.log_uri, job.created_at, job.updated_at, job.started_at, job.ended_at,
        _dump(job.flags), int(job.stage_in), _dump(job.output_patterns),
        _dump([jsonable(o) for o in job.outputs]), job.owner, job.max_rss_mb, job.activated_at,
    )  # fmt: skip


def _dump(value: list[Any] | dict[str, Any]) -> str:
    if not value:
        return "[]" if isinstance(value, list) else "{}"
    if isinstance(value, list):
        try:  # a list of strings (a command, inputs, parents): json.dumps' text, 4x faster
            return "[" + ", ".join(map(_json_str, value)) + "]"
        except TypeError:
            pass  # not only strings
    return json.dumps(value)


def job_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Job:
    """A job from the values of JOB_COLUMNS, in their order (a row read by position: reading
    jobs is most of the release path's CPU, so no name lookups, one shared `Resources` per
    distinct triple, and no JSON parser for an empty list or map)."""
    (
        id_, task_id, idx, status, attempt, failures, max_attempts, queue, priority, memory_mb,
        cores, walltime_s, command, inputs, env, parents, pilot_id, kill_requested, exit_code,
        error_code, error_diag, log_uri, created_at, updated_at, started_at, ended_at, flags,
        stage_in, output_patterns, outputs, owner, max_rss_mb, activated_at,
    ) = row  # fmt: skip
    outs = _list(outputs)
    return _construct(
        id=id_,
        task_id=task_id,
        index=idx,
        status=_STATUS[status],
        attempt=attempt,
        failures=failures,
        max_attempts=max_attempts,
        queue=queue,
        owner=owner,
        priority=priority,
        resources=_resources(memory_mb, cores, walltime_s),
        command=_list(command),
        inputs=_list(inputs),
        env=_map(env),
        parents=_list(parents),
        pilot_id=pilot_id,
        kill_requested=bool(kill_requested),
        exit_code=exit_code,
        error_code=error_code,
        error_diag=error_diag,
        log_uri=log_uri,
        created_at=created_at,
        updated_at=updated_at,
        started_at=started_at,
        ended_at=ended_at,
        flags=_map(flags),
        stage_in=bool(stage_in),
        output_patterns=_list(output_patterns),
        outputs=[OutputFile.model_validate(o) for o in outs] if outs else outs,
        max_rss_mb=max_rss_mb,
        activated_at=activated_at,
    )


_STATUS = {str(s): s for s in JobStatus}
_FIELDS = frozenset(Job.model_fields)
# `_construct` takes the fields in their declared order (the order `repr` shows them in)


def _construct(**values: Any) -> Job:
    """`Job.model_construct` for stored (valid) values of every field (`job_of_values`)."""
    return job_of_values(values, _FIELDS)


def _list(text: str) -> Any:
    return [] if text == "[]" else json.loads(text)


def _map(text: str) -> Any:
    return {} if text == "{}" else json.loads(text)


@lru_cache(maxsize=256)
def _resources(memory_mb: int, cores: int, walltime_s: float) -> Resources:
    """The stored resources (valid when written): shared, as `Resources` is frozen."""
    return Resources.model_construct(memory_mb=memory_mb, cores=cores, walltime_s=walltime_s)


def attempt_row(a: Attempt) -> tuple[Any, ...]:
    """An attempt as the values UPSERT_ATTEMPT takes."""
    return (
        a.job_id, a.attempt, a.pilot_id, str(a.status), a.started_at, a.ended_at, a.exit_code,
        a.error_code, a.error_diag, a.log_uri, a.max_rss_mb,
    )  # fmt: skip


def insert_task(db: sqlite3.Connection, task: Task) -> None:
    """Insert a new task (a plain one, or one of a workflow's). Raises InvalidInput if its id
    exists."""
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


def task_from_row(row: sqlite3.Row, counts: dict[str, int]) -> Task:
    return Task(
        id=row["id"],
        spec=TASK_SPECS.parse(row["id"], row["spec"]),
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
