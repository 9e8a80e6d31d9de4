"""Views: the read side people look at (the monitor, `skypanda tasks`, `/metrics`).

Every list is a page read along an index, newest first, with an opaque cursor for the next
page: no call scans a table or a whole task. Aggregates (an error summary, a histogram) read
one task's jobs by an index, or a bounded time window; the embedded store answers each in well
under 300 ms at a million jobs (`skypanda bench monitor`). Read-only: nothing here changes state.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from skypanda.domain.errors import InvalidInput
from skypanda.domain.fleet import Pilot
from skypanda.domain.records import Job, Task
from skypanda.domain.states import (
    JOB_FINAL,
    JOB_LIVE,
    JobStatus,
    PilotStatus,
    TaskStatus,
    WorkflowStatus,
)
from skypanda.domain.workflow import Workflow

T = TypeVar("T")

MAX_PAGE = 500
"""The most items one page returns (a caller asking for more gets this many)."""
WINDOW_S = 86_400.0
"""How far back the time-window aggregates reach at most (`since` is raised to now - this)."""
AGGREGATE_SAMPLE = 20_000
"""About the most jobs one per-task aggregate (durations, timeline) reads on the embedded
store: a bigger task's is of every k-th job by index, counts scaled by k (a systematic sample,
whatever the jobs' states): what keeps a task page's plots bounded whatever the task's size."""
MAX_CURSOR_CHARS = 1000


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    cursor: str | None = None  # pass back for the next page; None: this was the last


@dataclass(frozen=True)
class TaskQuery:
    owner: str | None = None  # None: everyone's (the API lets only admins ask so)
    statuses: frozenset[TaskStatus] = frozenset()  # empty: any
    name_prefix: str = ""
    since: float | None = None  # created at or after
    until: float | None = None  # created before
    workflow_id: str | None = None


@dataclass(frozen=True)
class WorkflowQuery:
    owner: str | None = None
    statuses: frozenset[WorkflowStatus] = frozenset()
    name_prefix: str = ""
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True)
class JobQuery:
    statuses: frozenset[JobStatus] = frozenset()
    error_code: int | None = None


@dataclass(frozen=True)
class ErrorCount:
    """Jobs of a task that ended with one error code (BigPanDA's error summary row).

    `count` counts failed attempts (in PanDA each retry is a job of its own): a job that
    failed twice with the code counts twice; attempts that end with an error code (a lost
    pilot's too) are counted, whether or not the job was retried."""

    error_code: int
    count: int
    diag: str  # one diagnosis seen with this code (the most recent)
    example_job: str  # a job with this code, to open


@dataclass(frozen=True)
class Bucket:
    """A count in a time bucket [start, start + width) or a value bucket."""

    start: float
    count: int
    label: str = ""  # e.g. a status or an error code, when one series of several


@dataclass(frozen=True)
class MemoryPoint:
    job_id: str
    requested_mb: int
    used_mb: int


@dataclass(frozen=True)
class QueueView:
    queue: str
    activated: int  # jobs waiting to be dispatched there
    pilots: dict[PilotStatus, int] = field(default_factory=dict)
    scaler_note: str = ""  # the scaler's last decision and why
    scaler_note_at: float | None = None


def page_limit(limit: int) -> int:
    """`limit` within 1..MAX_PAGE."""
    return max(1, min(int(limit), MAX_PAGE))


def query_key(*parts: object) -> str:
    """A short fingerprint of a list's query: a cursor carries it, so a cursor given with other
    filters than the page it came from is refused instead of silently skipping items."""
    canonical = json.dumps([_canonical(p) for p in parts], sort_keys=True, default=str)
    return hashlib.blake2b(canonical.encode(), digest_size=6).hexdigest()


def _canonical(value: object) -> object:
    """`value` with sets sorted and dataclasses as dicts: the same in every process (a set's
    order follows string hashing, which differs between processes)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, frozenset | set):
        return sorted(str(v) for v in value)
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def encode_cursor(kind: str, query: str, key: Sequence[Any]) -> str:
    """An opaque cursor: the list's kind, its query's fingerprint and the position (the last
    item's sort key), as URL-safe base64 of JSON.

    It is not signed, and need not be: it only says where to resume, every filter (the owner
    above all) is applied from the query, never from the cursor, so an edited cursor can only
    move within what the caller may already see; `decode_cursor` checks its shape."""
    raw = json.dumps([kind, query, list(key)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, query: str, types: Sequence[type]) -> list[Any]:
    """The position in `cursor`, checked against the list's kind, its query and the types of
    the key's parts (a float part accepts an int).

    Raises:
        InvalidInput: the cursor is not one this list gave for this query (edited, truncated,
            from another list or other filters).
    """
    bad = f"cursor {cursor[:40]!r} is not one this list gave"
    if not isinstance(cursor, str) or not 0 < len(cursor) <= MAX_CURSOR_CHARS:
        raise InvalidInput(f"{bad} (empty or too long)", cursor=str(cursor)[:40])
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{bad} (not a cursor)", cursor=cursor[:40]) from e
    if not (isinstance(decoded, list) and len(decoded) == 3 and isinstance(decoded[2], list)):
        raise InvalidInput(f"{bad} (not a cursor)", cursor=cursor[:40])
    got_kind, got_query, key = decoded
    if got_kind != kind:
        raise InvalidInput(f"{bad}: it is a cursor of another list", cursor=cursor[:40])
    if got_query != query:
        raise InvalidInput(
            f"{bad} with these filters: ask the first page again", cursor=cursor[:40]
        )
    if len(key) != len(types) or not all(_is(v, t) for v, t in zip(key, types, strict=True)):
        raise InvalidInput(f"{bad} (its position is malformed)", cursor=cursor[:40])
    return [float(v) if t is float else v for v, t in zip(key, types, strict=True)]


def _is(value: object, want: type) -> bool:
    if isinstance(value, bool):
        return False
    if want is float:
        return isinstance(value, int | float) and value == value and abs(value) < 1e18
    if want is int:
        return isinstance(value, int) and abs(value) < 2**63
    return isinstance(value, want) and (not isinstance(value, str) or len(value) <= 400)


class Views(Protocol):
    def task_page(self, query: TaskQuery, *, cursor: str | None, limit: int) -> Page[Task]:
        """Tasks matching `query`, newest first (job counts not filled)."""

    def workflow_page(
        self, query: WorkflowQuery, *, cursor: str | None, limit: int
    ) -> Page[Workflow]:
        """Workflows matching `query`, newest first."""

    def job_page(
        self, task_id: str, query: JobQuery, *, cursor: str | None, limit: int
    ) -> Page[Job]:
        """Jobs of a task in index order, filtered by state and error code."""

    def error_summary(self, task_id: str, *, limit: int = 50) -> list[ErrorCount]:
        """Failed (and failed-attempt) jobs of a task by error code, most frequent first."""

    def ended_per_minute(
        self, *, since: float, task_id: str | None = None, owner: str | None = None
    ) -> list[Bucket]:
        """Jobs that ended at or after `since`, per minute (start = the minute), one series per
        final status (label = the status). Bounded: `since` at most a day back (raised to
        it), and the window starts at the minute `since` falls in."""

    def failures_by_code(
        self, *, since: float, owner: str | None = None, limit: int = 20
    ) -> list[Bucket]:
        """Jobs failed for good at or after `since` by error code (label = the code, or
        "none"; start = `since`), most first. Bounded as `ended_per_minute`."""

    def duration_histogram(self, task_id: str) -> list[Bucket]:
        """Finished jobs' run times (ended - started) in log-spaced buckets (start = the
        bucket's lower bound in seconds: DURATION_EDGES). A big task's is sampled (see
        AGGREGATE_SAMPLE; Firestore reads its first 5000 jobs by index)."""

    def memory_use(self, task_id: str, *, limit: int = 1000) -> list[MemoryPoint]:
        """Peak memory used (reported by the pilot) against requested, for up to `limit` of a
        task's ended jobs."""

    def state_timeline(self, task_id: str, *, points: int = 60) -> list[dict[str, int]]:
        """Job counts by state at `points` evenly spaced moments from the task's creation to
        now (or its end): each dict has key "t" (seconds since the epoch) and one per state
        (defined, activated, running and the final states; see `timeline`), from the jobs'
        start and end times. Raises NotFound for an unknown task."""

    def queue_views(self) -> list[QueueView]:
        """Every queue: activated jobs, pilots by state, the scaler's last note."""

    def pilot_page(
        self,
        *,
        queue: str | None = None,
        statuses: Sequence[PilotStatus] = (),
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[Pilot]:
        """Pilots, newest first."""


# -- pure helpers both backends' aggregates share ------------------------------------------------

DURATION_EDGES: tuple[float, ...] = tuple(
    m * 10.0**e for e in range(-1, 6) for m in (1.0, 2.0, 5.0)
)
"""Lower bounds of the duration histogram's buckets, 1-2-5 per decade from 0.1 s (the first
bucket also takes anything shorter)."""
_FINAL = sorted(str(s) for s in JOB_FINAL)


def duration_bucket(seconds: float) -> int:
    """The index in DURATION_EDGES of the bucket `seconds` falls in."""
    return max(0, sum(1 for edge in DURATION_EDGES if seconds >= edge) - 1)


def timeline_point(at: float | None, t0: float, step: float) -> int | None:
    """The first timeline point (t0 + i * step) at or after `at`."""
    if at is None:
        return None
    return max(0, -int(-(at - t0) // step)) if step > 0 else 0


def timeline(
    rows: Iterable[tuple[str, int | None, int | None, int]], t0: float, step: float, points: int
) -> list[dict[str, int]]:
    """Counts by state at each point, from (current status, first point at or after its start,
    first point at or after its end, how many jobs): waiting (as `defined` or `activated`)
    before its start, running from its start, its final status from its end. Retried attempts
    are not told apart (a job's last start counts). Pure: the Firestore views build the same
    rows."""
    live = {str(s) for s in JOB_LIVE}
    keys = ["defined", "activated", "running", *_FINAL]
    delta = {k: [0] * (points + 1) for k in keys}  # +n where a state begins, -n where it ends

    def span(state: str, begin: int, end: int, n: int) -> None:
        if begin < end:
            delta[state][begin] += n
            delta[state][end] -= n

    for status, sp, ep, n in rows:
        waiting = "defined" if status == str(JobStatus.DEFINED) else "activated"
        start = None if sp is None else min(int(sp), points)
        end = None if ep is None or status not in _FINAL else min(int(ep), points)
        if end is not None:
            run_from = end if start is None else min(start, end)
            span(waiting, 0, run_from, n)
            span("running", run_from, end, n)
            span(status, end, points, n)
        elif start is not None and status in live:
            span(waiting, 0, start, n)
            span("running", start, points, n)
        else:
            span(waiting, 0, points, n)
    out: list[dict[str, int]] = []
    now = dict.fromkeys(keys, 0)
    for i in range(points):
        for k in keys:
            now[k] += delta[k][i]
        out.append({"t": round(t0 + i * step), **now})
    return out
