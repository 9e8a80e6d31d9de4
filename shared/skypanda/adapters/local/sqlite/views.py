"""Views on SQLite: the monitor's lists and aggregates, each one read along an index.

Lists are keyset-paged: newest first on `(created_at, rowid)` for tasks and workflows, on
`rowid` for pilots (their launch order), on `idx` for a task's jobs. A filter on several states
is one query per state on a `(..., status, key)` index, merged (`heapq.merge`) and cut at the
page: each reads at most a page, instead of one query that would sort every matching row.
A page is found by keys alone, then its rows are read by rowid.

Aggregates read covering indexes only (schema.sql says which): a task's jobs by state with their
times (`jobs_by_task_state`; a big task's in evenly spread blocks: `_sample`), failed attempts
by job id (`attempts_errors`; a task's are one range of ids). Time windows read the per-minute
counts the triggers of `rollups` keep. `EXPLAIN QUERY PLAN` of each is checked by
tests/contract/test_views.py: none scans the jobs table.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from skypanda.adapters.local.sqlite.db import (
    JOB_COLUMNS,
    SqliteDb,
    job_from_row,
    marks,
    task_from_row,
)
from skypanda.adapters.local.sqlite.fleet import _pilot
from skypanda.adapters.local.sqlite.workflows import _workflow
from skypanda.domain.errors import InvalidInput, NotFound
from skypanda.domain.fleet import Pilot
from skypanda.domain.records import Job, Task
from skypanda.domain.states import JOB_FINAL, JobStatus, PilotStatus, TaskStatus
from skypanda.domain.workflow import Workflow
from skypanda.ports.views import (
    AGGREGATE_SAMPLE,
    DURATION_EDGES,
    WINDOW_S,
    Bucket,
    ErrorCount,
    JobQuery,
    MemoryPoint,
    Page,
    QueueView,
    TaskQuery,
    WorkflowQuery,
    decode_cursor,
    encode_cursor,
    page_limit,
    query_key,
    timeline,
)

_FINAL = sorted(str(s) for s in JOB_FINAL)


def duration_bucket_sql(column: str) -> str:
    """An SQL expression: the index in DURATION_EDGES of the bucket `column` falls in."""
    cases = " ".join(
        f"WHEN {column} < {edge!r} THEN {i - 1}" for i, edge in enumerate(DURATION_EDGES)
    )
    return f"max(0, CASE {cases} ELSE {len(DURATION_EDGES) - 1} END)"


_Key = tuple[Any, ...]


class SqliteViews(SqliteDb):
    # -- lists -----------------------------------------------------------------------------------
    def task_page(self, query: TaskQuery, *, cursor: str | None, limit: int) -> Page[Task]:
        rows, nxt = self._dated_page("tasks", _dated_filters(query), query, cursor, limit)
        return Page([task_from_row(r, {}) for r in rows], nxt)

    def workflow_page(
        self, query: WorkflowQuery, *, cursor: str | None, limit: int
    ) -> Page[Workflow]:
        rows, nxt = self._dated_page("workflows", _dated_filters(query), query, cursor, limit)
        return Page([_workflow(r) for r in rows], nxt)

    def _dated_page(
        self,
        table: str,
        filters: tuple[list[str], list[Any]],
        query: TaskQuery | WorkflowQuery,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[sqlite3.Row], str | None]:
        """A page of `table` newest first, keyset on (created_at, rowid)."""
        limit = page_limit(limit)
        qkey = query_key(table, query)
        where, args = filters
        if cursor is not None:
            after = decode_cursor(cursor, table, qkey, (float, int))
            where, args = [*where, "(created_at, rowid) < (?, ?)"], [*args, *after]
        keys = self._merged_keys(
            f"SELECT created_at, rowid AS r FROM {table} WHERE {{where}} "
            f"ORDER BY created_at DESC, rowid DESC LIMIT {limit + 1}",
            where,
            args,
            [str(s) for s in sorted(query.statuses)],
            lambda r: (r["created_at"], r["r"]),
            descending=True,
        )[: limit + 1]
        page, more = keys[:limit], len(keys) > limit
        rows = self._by_rowid(table, [k[1] for k in page])
        return rows, encode_cursor(table, qkey, page[-1]) if more else None

    def _merged_keys(
        self,
        sql: str,
        where: list[str],
        args: list[Any],
        statuses: Sequence[str],
        key: Callable[[sqlite3.Row], _Key],
        *,
        descending: bool,
    ) -> list[_Key]:
        """The sort keys `sql` finds, one query per status (each on its own index range, each
        at most a page), merged in order: the caller cuts the result at its page."""
        if not statuses:
            return [key(r) for r in self._read(sql.format(where=" AND ".join(where)), args)]
        runs = [
            [key(r) for r in self._read(sql.format(where=" AND ".join([*where, "status = ?"])),
                                        [*args, status])]
            for status in statuses
        ]  # fmt: skip
        return list(heapq.merge(*runs, reverse=descending))

    def _by_rowid(self, table: str, rowids: Sequence[int]) -> list[sqlite3.Row]:
        if not rowids:
            return []
        got = {
            r["rowid"]: r
            for r in self._read(
                f"SELECT rowid, * FROM {table} WHERE rowid IN ({marks(rowids)})", rowids
            )
        }
        return [got[i] for i in rowids if i in got]

    def job_page(
        self, task_id: str, query: JobQuery, *, cursor: str | None, limit: int
    ) -> Page[Job]:
        limit = page_limit(limit)
        qkey = query_key("jobs", task_id, query)
        where: list[str] = ["task_id = ?"]
        args: list[Any] = [task_id]
        if query.error_code is not None:
            where.append("error_code = ?")
            args.append(query.error_code)
        if cursor is not None:
            (after,) = decode_cursor(cursor, "jobs", qkey, (int,))
            where.append("idx > ?")
            args.append(after)
        keys = self._merged_keys(
            f"SELECT idx FROM jobs WHERE {{where}} ORDER BY idx LIMIT {limit + 1}",
            where,
            args,
            [str(s) for s in sorted(query.statuses)],
            lambda r: (r["idx"],),
            descending=False,
        )[: limit + 1]
        page, more = [k[0] for k in keys[:limit]], len(keys) > limit
        rows = (
            self._read(
                f"SELECT {JOB_COLUMNS} FROM jobs WHERE task_id = ? AND idx IN ({marks(page)}) "
                f"ORDER BY idx",
                (task_id, *page),
            )
            if page
            else []
        )
        return Page(
            [job_from_row(r) for r in rows],
            encode_cursor("jobs", qkey, [page[-1]]) if more else None,
        )

    def pilot_page(
        self,
        *,
        queue: str | None = None,
        statuses: Sequence[PilotStatus] = (),
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[Pilot]:
        limit = page_limit(limit)
        wanted = sorted({str(s) for s in statuses})
        qkey = query_key("pilots", queue, wanted)
        where: list[str] = ["1 = 1"]
        args: list[Any] = []
        if queue is not None:
            where.append("queue = ?")
            args.append(queue)
            # (queue, status) is the index: a queue's pilots are a merge over its states.
            wanted = wanted or sorted(str(s) for s in PilotStatus)
        if cursor is not None:
            (after,) = decode_cursor(cursor, "pilots", qkey, (int,))
            where.append("rowid < ?")
            args.append(after)
        keys = self._merged_keys(
            f"SELECT rowid AS r FROM pilots WHERE {{where}} ORDER BY rowid DESC LIMIT {limit + 1}",
            where,
            args,
            wanted,
            lambda r: (r["r"],),
            descending=True,
        )[: limit + 1]
        page, more = [k[0] for k in keys[:limit]], len(keys) > limit
        rows = self._by_rowid("pilots", page)
        return Page(
            [_pilot(r) for r in rows], encode_cursor("pilots", qkey, [page[-1]]) if more else None
        )

    # -- a task's aggregates ---------------------------------------------------------------------
    def error_summary(self, task_id: str, *, limit: int = 50) -> list[ErrorCount]:
        low, high, length = _job_id_range(task_id)
        rows = self._read(
            "SELECT error_code, count(*) AS n, max(ended_at) AS last, job_id, attempt "
            "FROM attempts WHERE job_id > ? AND job_id < ? AND length(job_id) = ? "
            "AND error_code IS NOT NULL GROUP BY error_code ORDER BY n DESC, error_code LIMIT ?",
            (low, high, length, max(1, min(limit, 500))),
        )
        out: list[ErrorCount] = []
        for r in rows:
            diag = self._read(
                "SELECT error_diag FROM attempts WHERE job_id = ? AND attempt = ? "
                "AND error_code IS NOT NULL",  # by `attempts_errors`
                (r["job_id"], r["attempt"]),
            )
            out.append(
                ErrorCount(
                    error_code=int(r["error_code"]),
                    count=int(r["n"]),
                    diag=diag[0]["error_diag"] if diag else "",
                    example_job=r["job_id"],
                )
            )
        return out

    def duration_histogram(self, task_id: str) -> list[Bucket]:
        finished = [str(JobStatus.FINISHED)]
        blocks, scale = self._sample(task_id, finished, "started_at, ended_at", param=1)
        rows = self._read(
            f"{blocks} SELECT {duration_bucket_sql('d')} AS b, count(*) AS n FROM ("
            f" SELECT ended_at - started_at AS d FROM sample"
            f" WHERE started_at IS NOT NULL AND ended_at IS NOT NULL) GROUP BY b ORDER BY b",
            (task_id,),
        )
        return [Bucket(start=DURATION_EDGES[r["b"]], count=round(r["n"] * scale)) for r in rows]

    def _sample(
        self, task_id: str, states: Sequence[str], columns: str, param: int
    ) -> tuple[str, float]:
        """A `WITH` clause defining `sample` (status and `columns` of a task's jobs in
        `states`, all of them or none: every state; the task's id is bound as `?{param}`), and
        the factor its counts are scaled by.

        A task of more than AGGREGATE_SAMPLE jobs is sampled in SAMPLE_BLOCKS blocks of
        consecutive indexes spread evenly over the task: each block is one range of the
        `(task_id, status, idx, ...)` index per state, so the read is AGGREGATE_SAMPLE index
        entries whatever the task's size (reading every k-th job would still step through
        them all)."""
        rows = self._read("SELECT n_jobs FROM tasks WHERE id = ?", (task_id,))
        n = max(1, int(rows[0]["n_jobs"]) if rows else 1)
        block = min(n, AGGREGATE_SAMPLE // SAMPLE_BLOCKS) if n > AGGREGATE_SAMPLE else n
        stride = -(-n // SAMPLE_BLOCKS) if n > AGGREGATE_SAMPLE else n
        wanted = list(states) or _ALL_STATES
        quoted = ", ".join(f"'{s}'" for s in wanted)  # enum values: safe to inline
        return (
            f"WITH RECURSIVE blocks(lo) AS (SELECT 0 UNION ALL SELECT lo + {stride} FROM blocks"
            f" WHERE lo + {stride} < {n}), sample AS (SELECT j.status, {_prefixed(columns)}"
            f" FROM blocks, jobs AS j WHERE j.task_id = ?{param} AND j.status IN ({quoted})"
            f" AND j.idx >= blocks.lo AND j.idx < blocks.lo + {block})",
            stride / block,
        )

    def memory_use(self, task_id: str, *, limit: int = 1000) -> list[MemoryPoint]:
        ended = [str(JobStatus.FINISHED), str(JobStatus.FAILED)]
        rows = self._read(
            f"SELECT id, memory_mb, max_rss_mb FROM jobs WHERE task_id = ? "
            f"AND status IN ({marks(ended)}) AND max_rss_mb IS NOT NULL LIMIT ?",
            (task_id, *ended, max(1, min(limit, 10_000))),
        )
        return [
            MemoryPoint(job_id=r["id"], requested_mb=r["memory_mb"], used_mb=r["max_rss_mb"])
            for r in rows
        ]

    def state_timeline(self, task_id: str, *, points: int = 60) -> list[dict[str, int]]:
        task = self._read(
            "SELECT created_at, updated_at, status FROM tasks WHERE id = ?", (task_id,)
        )
        if not task:
            raise NotFound(f"no task with id {task_id!r}", task_id=task_id)
        points = max(2, min(points, 500))
        t0 = float(task[0]["created_at"])
        ended = TaskStatus(task[0]["status"]) in _TASK_ENDED
        t1 = float(task[0]["updated_at"]) if ended else max(self._clock(), t0)
        step = max((t1 - t0) / (points - 1), 1e-6)
        blocks, scale = self._sample(task_id, [], "started_at, ended_at", param=3)
        # The first point at or after each start and end: a job is running from its start's
        # point and in its final state from its end's point (one row per distinct pair).
        ceil = "max(0, CAST({x} AS INTEGER) + ({x} > CAST({x} AS INTEGER)))"  # no ceil() needed
        start = ceil.format(x="((started_at - ?1) / ?2)")
        end = ceil.format(x="((ended_at - ?1) / ?2)")
        rows = self._read(
            f"{blocks} SELECT status, sp, ep, count(*) AS n FROM ("
            f" SELECT status, CASE WHEN started_at IS NULL THEN NULL ELSE {start} END AS sp,"
            f" CASE WHEN ended_at IS NULL THEN NULL ELSE {end} END AS ep"
            f" FROM sample) GROUP BY status, sp, ep",
            (t0, step, task_id),
        )
        return timeline(
            ((r["status"], r["sp"], r["ep"], round(r["n"] * scale)) for r in rows), t0, step, points
        )

    # -- time windows ----------------------------------------------------------------------------
    def ended_per_minute(
        self, *, since: float, task_id: str | None = None, owner: str | None = None
    ) -> list[Bucket]:
        # From the per-minute counts (rollups): a day is at most 1440 rows per state.
        first = _minute(max(since, self._clock() - WINDOW_S))
        if task_id is not None:
            if owner is not None and not self._read(
                "SELECT 1 FROM tasks WHERE id = ? AND owner = ?", (task_id, owner)
            ):
                return []
            table, where, args = "ends_by_task", "task_id = ? AND ", [task_id]
        elif owner is not None:
            table, where, args = "ends_by_owner", "owner = ? AND ", [owner]
        else:
            table, where, args = "ends_by_minute", "", []
        rows = self._read(
            f"SELECT minute, status, n FROM {table} WHERE {where}minute >= ? AND n > 0 "
            f"ORDER BY minute, status",
            (*args, first),
        )
        return [
            Bucket(start=float(r["minute"]), count=int(r["n"]), label=r["status"]) for r in rows
        ]

    def failures_by_code(
        self, *, since: float, owner: str | None = None, limit: int = 20
    ) -> list[Bucket]:
        since = max(since, self._clock() - WINDOW_S)
        table, where, args = (
            ("fails_by_code", "", []) if owner is None
            else ("fails_by_owner_code", "owner = ? AND ", [owner])
        )  # fmt: skip
        rows = self._read(
            f"SELECT error_code, sum(n) AS n FROM {table} WHERE {where}minute >= ? "
            f"GROUP BY error_code HAVING sum(n) > 0 ORDER BY n DESC, error_code LIMIT ?",
            (*args, _minute(since), max(1, min(limit, 500))),
        )
        return [
            Bucket(
                start=since,
                count=int(r["n"]),
                label=_code(None if r["error_code"] < 0 else r["error_code"]),
            )
            for r in rows
        ]

    # -- the fleet -------------------------------------------------------------------------------
    def queue_views(self) -> list[QueueView]:
        notes = {
            r["queue"]: (r["note"], r["at"])
            for r in self._read("SELECT queue, note, at FROM scaler_notes")
        }
        out: list[QueueView] = []
        for r in self._read("SELECT name FROM queues ORDER BY name"):
            name = r["name"]
            # The status as a literal: the partial dispatch index (WHERE status = 'activated')
            # then answers the count alone.
            (n,) = self._read(
                "SELECT count(*) FROM jobs WHERE queue = ? AND status = 'activated'", (name,)
            )[0]
            pilots = {
                PilotStatus(p["status"]): int(p["n"])
                for p in self._read(
                    "SELECT status, count(*) AS n FROM pilots WHERE queue = ? GROUP BY status",
                    (name,),
                )
            }
            note, at = notes.get(name, ("", None))
            out.append(QueueView(name, int(n), pilots, note, at))
        return out


_TASK_ENDED = frozenset(
    {TaskStatus.DONE, TaskStatus.FINISHED, TaskStatus.FAILED, TaskStatus.ABORTED,
     TaskStatus.SKIPPED, TaskStatus.CANCELLED}
)  # fmt: skip


_ALL_STATES = sorted(str(s) for s in JobStatus)
SAMPLE_BLOCKS = 200


def _prefixed(columns: str) -> str:
    return ", ".join(f"j.{c.strip()}" for c in columns.split(","))


def _minute(at: float) -> int:
    """The start of the minute `at` falls in (a window starts at its first minute)."""
    return int(at // 60) * 60


def _code(code: int | None) -> str:
    return "none" if code is None else str(code)


def _dated_filters(query: TaskQuery | WorkflowQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = ["1 = 1"]
    args: list[Any] = []
    if query.owner is not None:
        where.append("owner = ?")
        args.append(query.owner)
    if isinstance(query, TaskQuery) and query.workflow_id is not None:
        where.append("workflow_id = ?")
        args.append(query.workflow_id)
    if query.name_prefix:
        where.append("substr(name, 1, ?) = ?")
        args.extend([len(query.name_prefix), query.name_prefix])
    if query.since is not None:
        where.append("created_at >= ?")
        args.append(query.since)
    if query.until is not None:
        where.append("created_at < ?")
        args.append(query.until)
    return where, args


def _job_id_range(task_id: str) -> tuple[str, str, int]:
    """The job ids of a task are `<task id>-<12 hex digits>` (domain.ids): the open range
    (task id + '-', task id + '.') holds them, and their length tells them from the jobs of a
    task whose id extends this one."""
    if not task_id:
        raise InvalidInput("a task id is needed")
    return f"{task_id}-", f"{task_id}.", len(task_id) + 13
