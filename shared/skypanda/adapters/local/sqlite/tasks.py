"""TaskStore on SQLite: tasks, their split into jobs (with the jobs' dependency edges), counts."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

from skypanda.adapters.local.sqlite import keys
from skypanda.adapters.local.sqlite.db import (
    FINAL,
    JOB_COLUMNS,
    JOB_PLACEHOLDERS,
    SqliteDb,
    insert_task,
    job_row,
    marks,
    task_from_row,
)
from skypanda.domain.errors import NotFound
from skypanda.domain.events import Event
from skypanda.domain.models import Job, Task, TaskSpec
from skypanda.domain.quota import Usage
from skypanda.domain.states import JOB_FINAL, TASK_UNENDED, JobStatus, TaskStatus, advance

_INSERT_CHUNK = 4096
_UNENDED = sorted(str(s) for s in TASK_UNENDED)
JOB_ROWS = 512
"""Jobs per INSERT statement (33 values each, well under SQLite's bound values). One statement
per row would cost far more: the triggers on `jobs` make every statement keep a statement
journal (each page it touches copied to a temporary file once per statement, so once per
row), while a statement of many rows touches each page once. A job's edges likewise."""
EDGE_ROWS = 2048
BULK_CACHE_KIB = 64 * 1024
"""SQLite's page cache while a big split is stored (then back to the connection's own): the
jobs' index by id takes each new job at a random place, and with the default 2 MB most of
them missed the cache (a million jobs' ids are about 50 MB of index)."""


def _status_or_none(status: JobStatus | None) -> str | None:
    """An edge's recorded parent status: a final one, else None (pending: the parent's release
    records it when it ends)."""
    return str(status) if status is not None and str(status) in FINAL else None


class SqliteTasks(SqliteDb):
    def add_task(self, task: Task, events: Sequence[Event]) -> None:
        with self._tx() as db:
            insert_task(db, task)
            emitted = self._emit(db, events)
        if emitted:
            self.on_events()

    def get_task(self, task_id: str, *, counts: bool = True) -> Task:
        rows = self._read("SELECT * FROM tasks WHERE id = ?", (task_id,))
        if not rows:
            raise NotFound(f"no task with id {task_id!r}", task_id=task_id)
        by_status = {str(k): v for k, v in self.job_counts(task_id).items()} if counts else {}
        return task_from_row(rows[0], by_status)

    def list_tasks(self, *, limit: int = 100) -> list[Task]:
        rows = self._read("SELECT * FROM tasks ORDER BY created_at DESC LIMIT ?", (limit,))
        return [task_from_row(r, {}) for r in rows]

    def owner_usage(self, owner: str) -> Usage:
        (tasks, jobs), *_ = self._read(
            f"SELECT count(*), total(n_jobs) FROM tasks WHERE owner = ? "
            f"AND status IN ({marks(_UNENDED)})",
            (owner, *_UNENDED),
        )
        return Usage(tasks=int(tasks), jobs=int(jobs))

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
        return self._set_status("tasks", task_id, expected, str(to), reason, events)

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
            batch: list[Job] = []
            cache = None
            try:
                for job in jobs:
                    batch.append(job)
                    if len(batch) >= _INSERT_CHUNK:
                        if cache is None:  # a big split: see BULK_CACHE_KIB
                            cache = db.execute("PRAGMA cache_size").fetchone()[0]
                            db.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
                        n += self._insert_jobs(db, task_id, batch, ended)
                        batch = []
                n += self._insert_jobs(db, task_id, batch, ended)
            finally:
                if cache is not None:
                    db.execute(f"PRAGMA cache_size = {int(cache)}")
            db.execute("UPDATE tasks SET n_jobs = ? WHERE id = ?", (n, task_id))
            emitted = self._emit(db, events)
        if emitted:
            self.on_events()
        return True

    @staticmethod
    def _insert_jobs(
        db: sqlite3.Connection, task_id: str, jobs: list[Job], ended: Mapping[str, JobStatus]
    ) -> int:
        """Store `jobs` at their keys, with the edges from their parents (keys.py)."""
        numbering = keys.Numbering(db)
        own = [numbering.job_key(task_id, j.id, j.index) for j in jobs]
        rows = [(key, *job_row(job)) for key, job in zip(own, jobs, strict=True)]
        for n, values in _statements(rows, JOB_ROWS):
            db.execute(_insert_jobs_sql(n), values)
        edges = [
            (numbering.key(p), key, _status_or_none(ended.get(p)))
            for key, job in zip(own, jobs, strict=True)
            for p in job.parents
        ]
        for n, values in _statements(edges, EDGE_ROWS):
            db.execute(_insert_edges_sql(n), values)
        return len(rows)

    def job_counts(self, task_id: str) -> dict[JobStatus, int]:
        rows = self._read(
            "SELECT status, count(*) AS n FROM jobs WHERE task_id = ? GROUP BY status", (task_id,)
        )
        return {JobStatus(r["status"]): r["n"] for r in rows}

    def has_unended_jobs(self, task_id: str) -> bool:
        unended = [str(s) for s in JobStatus if s not in JOB_FINAL]
        rows = self._read(
            f"SELECT 1 FROM jobs WHERE task_id = ? AND status IN ({marks(unended)}) LIMIT 1",
            (task_id, *unended),
        )
        return bool(rows)

    def place_task(self, task_id: str, spec: TaskSpec, events: Sequence[Event]) -> bool:
        advance(TaskStatus.PENDING, TaskStatus.REGISTERED)
        with self._tx() as db:
            cur = db.execute(
                "UPDATE tasks SET status = ?, spec = ?, reason = '', updated_at = ? "
                "WHERE id = ? AND status = ?",
                (str(TaskStatus.REGISTERED), spec.model_dump_json(by_alias=True), self._clock(),
                 task_id, str(TaskStatus.PENDING)),
            )  # fmt: skip
            won = cur.rowcount == 1
            emitted = won and self._emit(db, events)
        if emitted:
            self.on_events()
        return won

    def held_tasks(self, trigger_id: str, limit: int) -> list[Task]:
        # The expression and the literal status are those of the partial index `tasks_held`.
        rows = self._read(
            "SELECT * FROM tasks WHERE coalesce(json_extract(spec, '$.start_after.task'), "
            "json_extract(spec, '$.start_after.workflow')) = ? AND status = 'pending' "
            "ORDER BY created_at LIMIT ?",
            (trigger_id, limit),
        )
        return [task_from_row(r, {}) for r in rows]

    def count_jobs_above_memory(self, task_id: str, memory_mb: int) -> int:
        rows = self._read(
            "SELECT count(*) AS n FROM jobs WHERE task_id = ? AND memory_mb > ?",
            (task_id, memory_mb),
        )
        return int(rows[0]["n"])

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


def _statements(rows: Sequence[tuple[Any, ...]], most: int) -> Iterator[tuple[int, list[Any]]]:
    """`rows` cut into multi-row statements: (rows in it, its values), each of `most` rows or
    a power of two (the rest), so few distinct statements are ever compiled."""
    start = 0
    while start < len(rows):
        n = min(most, 1 << ((len(rows) - start).bit_length() - 1))
        yield n, [v for row in rows[start : start + n] for v in row]
        start += n


@lru_cache(maxsize=32)
def _insert_jobs_sql(n: int) -> str:
    return f"INSERT INTO jobs (rowid, {JOB_COLUMNS}) VALUES " + ",".join(
        [f"(?, {JOB_PLACEHOLDERS})"] * n
    )


@lru_cache(maxsize=32)
def _insert_edges_sql(n: int) -> str:
    return "INSERT OR IGNORE INTO job_links (parent, child, parent_status) VALUES " + ",".join(
        ["(?,?,?)"] * n
    )
