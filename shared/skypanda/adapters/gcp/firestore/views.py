"""Views on Firestore: the monitor's lists and aggregates, each a query along a composite index
(infra/firestore.indexes.json), priced in document reads (Firestore bills per document read,
and an aggregation query one read per 1000 index entries it counts, at least one).

- Lists: one query, filters as equalities (several states: one `in`), ordered newest first on
  `(created_at, __name__)` (a task's jobs: on `index`), `limit + 1`, resumed with
  `start_after` the last document's values. Cost: the page plus one read. A name prefix is
  filtered here while reading (Firestore cannot order on one field and range on another
  without an index per pair), so a page reads at most PREFIX_BUDGET documents and may come
  back short, with a cursor to go on.
- A task's error summary: a sample of its failed attempts (SAMPLE reads at most) finds the
  codes; one count() per code (index entries / 1000 reads) makes each exact, one read per code
  fetches its latest diagnosis.
- A task's durations, memory and timeline read at most SAMPLE of its jobs (fields masked), the
  first by index.
- Time windows (`ended_per_minute`, `failures_by_code`): jobs by (status, ended_at), fields
  masked, at most WINDOW_READS per call.
- Queues: one count() for each queue's activated jobs and each (queue, pilot state).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from skypanda.adapters.gcp.firestore import codec
from skypanda.adapters.gcp.firestore.base import BY_ID, FirestoreBase, count, eq, fields, where
from skypanda.domain.errors import NotFound
from skypanda.domain.fleet import Pilot
from skypanda.domain.records import Job, Task
from skypanda.domain.states import JOB_FINAL, JobStatus, PilotStatus, TaskStatus
from skypanda.domain.workflow import Workflow
from skypanda.ports.views import (
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
    duration_bucket,
    encode_cursor,
    page_limit,
    query_key,
    timeline,
    timeline_point,
)

SAMPLE = 5000
"""The most jobs (or failed attempts) one per-task aggregate reads."""
WINDOW_READS = 20_000
"""The most jobs one time-window aggregate reads."""
PREFIX_BUDGET = 2000
"""The most documents one page filtered by a name prefix reads."""
DESC = firestore.Query.DESCENDING
_FINAL = sorted(str(s) for s in JOB_FINAL)
_TASK_ENDED = {"done", "finished", "failed", "aborted", "skipped", "cancelled"}


class ViewPart(FirestoreBase):
    # -- lists -----------------------------------------------------------------------------------
    def task_page(self, query: TaskQuery, *, cursor: str | None, limit: int) -> Page[Task]:
        base = where(
            self._tasks,
            None if query.workflow_id is None else eq("workflow_id", query.workflow_id),
        )
        docs, nxt = self._dated_page("tasks", base, query, cursor, limit)
        return Page([codec.task_from(i, d, {}) for i, d in docs], nxt)

    def workflow_page(
        self, query: WorkflowQuery, *, cursor: str | None, limit: int
    ) -> Page[Workflow]:
        docs, nxt = self._dated_page("workflows", self._workflows, query, cursor, limit)
        return Page([codec.workflow_from(i, d) for i, d in docs], nxt)

    def _dated_page(
        self,
        kind: str,
        base: Any,
        query: TaskQuery | WorkflowQuery,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[tuple[str, codec.Doc]], str | None]:
        limit = page_limit(limit)
        qkey = query_key(kind, query)
        collection = self._tasks if kind == "tasks" else self._workflows
        q = (
            where(
                base,
                None if query.owner is None else eq("owner", query.owner),
                _states(query.statuses),
                None if query.since is None else FieldFilter("created_at", ">=", query.since),
                None if query.until is None else FieldFilter("created_at", "<", query.until),
            )
            .order_by("created_at", direction=DESC)
            .order_by(BY_ID, direction=DESC)
        )
        after = None if cursor is None else decode_cursor(cursor, kind, qkey, (float, str))
        out: list[tuple[str, codec.Doc]] = []
        budget = PREFIX_BUDGET if query.name_prefix else limit + 1
        while True:
            batch_q = (
                q
                if after is None
                else q.start_after({"created_at": after[0], BY_ID: collection.document(after[1])})
            )
            want = limit + 1 - len(out) if not query.name_prefix else min(budget, limit + 1)
            snaps = self._stream(f"{kind}_page", batch_q.limit(want))
            budget -= len(snaps)
            for s in snaps:
                d = fields(s)
                after = [float(d["created_at"]), s.id]
                if d["name"].startswith(query.name_prefix):
                    out.append((s.id, d))
                if len(out) > limit:
                    break
            if len(out) > limit:
                last_id, last = out[limit - 1]
                return out[:limit], encode_cursor(kind, qkey, [last["created_at"], last_id])
            if len(snaps) < want:
                return out, None  # the end
            if budget <= 0:  # read enough for one call: where the scan stopped
                return out, encode_cursor(kind, qkey, after)  # type: ignore[arg-type]

    def job_page(
        self, task_id: str, query: JobQuery, *, cursor: str | None, limit: int
    ) -> Page[Job]:
        limit = page_limit(limit)
        qkey = query_key("jobs", task_id, query)
        q = where(
            self._jobs,
            eq("task_id", task_id),
            _states(query.statuses),
            None if query.error_code is None else eq("error_code", query.error_code),
        ).order_by("index")
        if cursor is not None:
            (after,) = decode_cursor(cursor, "jobs", qkey, (int,))
            q = q.start_after({"index": after})
        snaps = self._stream("job_page", q.limit(limit + 1))
        jobs = [codec.job_from(s.id, fields(s)) for s in snaps[:limit]]
        more = len(snaps) > limit
        return Page(jobs, encode_cursor("jobs", qkey, [jobs[-1].index]) if more else None)

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
        q = (
            where(
                self._pilots,
                None if queue is None else eq("queue", queue),
                _states(frozenset(wanted)),
            )
            .order_by("created_at", direction=DESC)
            .order_by(BY_ID, direction=DESC)
        )
        if cursor is not None:
            at, pid = decode_cursor(cursor, "pilots", qkey, (float, str))
            q = q.start_after({"created_at": at, BY_ID: self._pilots.document(pid)})
        snaps = self._stream("pilot_page", q.limit(limit + 1))
        pilots = [codec.pilot_from(fields(s)) for s in snaps[:limit]]
        more = len(snaps) > limit
        return Page(
            pilots,
            encode_cursor("pilots", qkey, [pilots[-1].created_at, pilots[-1].id]) if more else None,
        )

    # -- a task's aggregates ---------------------------------------------------------------------
    def error_summary(self, task_id: str, *, limit: int = 50) -> list[ErrorCount]:
        # Ended attempts are in `attempts`, but a job's last one stays in the job document
        # (plans.plan_changes) until another starts: failed jobs are read too, and an attempt
        # seen in both counts once.
        mask = ["error_code", "ended_at", "job_id", "attempt"]
        errs = FieldFilter("error_code", "!=", None)
        kept = where(self._attempts, eq("task_id", task_id), errs)
        final = where(self._jobs, eq("task_id", task_id), eq("status", str(JobStatus.FAILED)))
        samples = [
            (self._attempts, self._stream("error_summary", kept.select(mask).limit(SAMPLE))),
            (
                self._jobs,
                self._stream("error_summary", final.select([*mask[:2], "attempt"]).limit(SAMPLE)),
            ),
        ]
        seen: Counter[int] = Counter()
        latest: dict[int, tuple[float, Any, str]] = {}  # code -> (ended, document, job id)
        counted: set[tuple[str, int]] = set()
        for collection, snaps in samples:
            for snap in snaps:
                d = fields(snap)
                job_id = str(d.get("job_id") or snap.id)
                key = (job_id, int(d.get("attempt") or 0))
                if d.get("error_code") is None or key in counted:
                    continue
                counted.add(key)
                code, ended = int(d["error_code"]), float(d.get("ended_at") or 0.0)
                seen[code] += 1
                if code not in latest or ended >= latest[code][0]:
                    latest[code] = (ended, collection.document(snap.id), job_id)
        if any(len(snaps) >= SAMPLE for _, snaps in samples):  # a sample: count each exactly
            with self._backend("error_summary"):
                for code in seen:
                    of_code = eq("error_code", code)
                    seen[code] = count(
                        where(self._attempts, eq("task_id", task_id), of_code)
                    ) + count(where(final, of_code))
        out: list[ErrorCount] = []
        for code, n in sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))[: max(1, limit)]:
            _, ref, job_id = latest[code]
            doc = self._read("error_summary", ref) or {}
            out.append(ErrorCount(code, n, str(doc.get("error_diag", "")), job_id))
        return out

    def _task_sample(
        self, what: str, task_id: str, states: Sequence[str], mask: list[str]
    ) -> list[codec.Doc]:
        q = where(self._jobs, eq("task_id", task_id), _states(frozenset(states)))
        return [fields(s) for s in self._stream(what, q.select(mask).limit(SAMPLE))]

    def duration_histogram(self, task_id: str) -> list[Bucket]:
        docs = self._task_sample(
            "duration_histogram", task_id, [str(JobStatus.FINISHED)], ["started_at", "ended_at"]
        )
        counts: Counter[int] = Counter()
        for d in docs:
            if d.get("started_at") is not None and d.get("ended_at") is not None:
                counts[duration_bucket(float(d["ended_at"]) - float(d["started_at"]))] += 1
        return [Bucket(start=DURATION_EDGES[b], count=n) for b, n in sorted(counts.items())]

    def memory_use(self, task_id: str, *, limit: int = 1000) -> list[MemoryPoint]:
        q = where(
            self._jobs,
            eq("task_id", task_id),
            _states(frozenset({str(JobStatus.FINISHED), str(JobStatus.FAILED)})),
        )
        # Jobs ended before pilots reported memory have none: read a page, keep those that do.
        snaps = self._stream(
            "memory_use", q.select(["memory_mb", "max_rss_mb"]).limit(max(1, min(limit, 10_000)))
        )
        return [
            MemoryPoint(s.id, int(d["memory_mb"]), int(d["max_rss_mb"]))
            for s in snaps
            if (d := fields(s)).get("max_rss_mb") is not None
        ]

    def state_timeline(self, task_id: str, *, points: int = 60) -> list[dict[str, int]]:
        task = self._read("state_timeline", self._tasks.document(task_id))
        if task is None:
            raise NotFound(f"no task with id {task_id!r}", task_id=task_id)
        points = max(2, min(points, 500))
        t0 = float(task["created_at"])
        ended = TaskStatus(task["status"]) in {TaskStatus(s) for s in _TASK_ENDED}
        t1 = float(task["updated_at"]) if ended else max(self._clock(), t0)
        step = max((t1 - t0) / (points - 1), 1e-6)
        docs = self._task_sample(
            "state_timeline", task_id, [], ["status", "started_at", "ended_at"]
        )
        rows: Counter[tuple[str, int | None, int | None]] = Counter()
        for d in docs:
            rows[(d["status"], _at(d, "started_at", t0, step), _at(d, "ended_at", t0, step))] += 1
        return timeline(((s, a, b, n) for (s, a, b), n in rows.items()), t0, step, points)

    # -- time windows ----------------------------------------------------------------------------
    def _ended(
        self, what: str, since: float, states: Sequence[str], mask: list[str], **eqs: str | None
    ) -> list[codec.Doc]:
        since = max(since, self._clock() - WINDOW_S) // 60 * 60  # from the minute it falls in
        q = where(
            self._jobs,
            *(eq(k, v) for k, v in eqs.items() if v is not None),
            _states(frozenset(states)),
            FieldFilter("ended_at", ">=", since),
        )
        return [fields(s) for s in self._stream(what, q.select(mask).limit(WINDOW_READS))]

    def ended_per_minute(
        self, *, since: float, task_id: str | None = None, owner: str | None = None
    ) -> list[Bucket]:
        docs = self._ended(
            "ended_per_minute", since, _FINAL, ["ended_at", "status"], task_id=task_id, owner=owner
        )
        counts = Counter((int(float(d["ended_at"]) // 60) * 60, str(d["status"])) for d in docs)
        return [Bucket(float(m), n, s) for (m, s), n in sorted(counts.items())]

    def failures_by_code(
        self, *, since: float, owner: str | None = None, limit: int = 20
    ) -> list[Bucket]:
        docs = self._ended(
            "failures_by_code", since, [str(JobStatus.FAILED)], ["error_code"], owner=owner
        )
        counts = Counter(
            "none" if d.get("error_code") is None else str(d["error_code"]) for d in docs
        )
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max(1, limit)]
        return [Bucket(max(since, self._clock() - WINDOW_S), n, code) for code, n in ranked]

    # -- the fleet -------------------------------------------------------------------------------
    def queue_views(self) -> list[QueueView]:
        notes = self.scaling_notes()  # type: ignore[attr-defined]
        out: list[QueueView] = []
        for queue in self.list_queues():  # type: ignore[attr-defined]
            with self._backend("queue_views"):
                activated = count(
                    where(
                        self._jobs, eq("queue", queue.name), eq("status", str(JobStatus.ACTIVATED))
                    )
                )
                pilots = {
                    s: n
                    for s in PilotStatus
                    if (
                        n := count(
                            where(self._pilots, eq("queue", queue.name), eq("status", str(s)))
                        )
                    )
                }
            note, at = notes.get(queue.name, ("", None))
            out.append(QueueView(queue.name, activated, pilots, note, at))
        return out


def _states(states: frozenset[Any]) -> FieldFilter | None:
    """An equality on one state, an `in` on several, nothing on none."""
    values = sorted(str(s) for s in states)
    if not values:
        return None
    return eq("status", values[0]) if len(values) == 1 else FieldFilter("status", "in", values)


def _at(d: codec.Doc, name: str, t0: float, step: float) -> int | None:
    value = d.get(name)
    return None if value is None else timeline_point(float(value), t0, step)
