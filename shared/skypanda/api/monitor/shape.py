"""What the monitor's pages show, shaped from records: pure functions (no request, no store),
so the pages' decisions (which actions a viewer gets, how a chart's series line up, how the
task graph is drawn) are unit-tested without a server.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from skypanda.domain.planner import describe
from skypanda.domain.records import Task
from skypanda.domain.states import (
    JOB_FINAL,
    JOB_LIVE,
    JOB_QUEUED,
    TASK_FINAL,
    JobStatus,
    TaskStatus,
    WorkflowStatus,
    allowed,
)
from skypanda.domain.workflow import INDEX, CompiledWorkflow

E = TypeVar("E", bound=StrEnum)

# -- formatting (template filters) ------------------------------------------------------------


def when(t: float | None) -> str:
    """A moment in UTC, to the second ("" when unknown)."""
    if t is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def span(seconds: float | None) -> str:
    """A duration people read: "850 ms", "42 s", "3 m 05 s", "2 h 10 m", "3 d 4 h"."""
    if seconds is None or seconds < 0 or math.isnan(seconds):
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    m, s = divmod(int(seconds), 60)
    if m < 60:
        return f"{m} m {s:02d} s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m:02d} m"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"


def size(n: int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover (the loop always returns)


def elapsed(start: float | None, end: float | None) -> str:
    return "" if start is None or end is None else span(end - start)


FILTERS: Mapping[str, Callable[..., str]] = {
    "when": when,
    "span": span,
    "size": size,
}

# -- query arguments ----------------------------------------------------------------------------


def to_local_input(t: float | None) -> str:
    """A time as a datetime-local field shows it (UTC)."""
    return "" if t is None else time.strftime("%Y-%m-%dT%H:%M", time.gmtime(t))


TASK_BAD = frozenset({TaskStatus.FAILED, TaskStatus.ABORTED, TaskStatus.CANCELLED})
WORKFLOW_BAD = frozenset({WorkflowStatus.FAILED, WorkflowStatus.ABORTED})
"""Ended badly: the reason is shown as a problem (else as a plain note)."""

# -- what a viewer may do -----------------------------------------------------------------------


@dataclass(frozen=True)
class TaskActions:
    kill: bool = False
    retry: bool = False
    pause: bool = False
    resume: bool = False
    priority: bool = False

    @property
    def any(self) -> bool:
        return self.kill or self.retry or self.pause or self.resume or self.priority


def task_actions(task: Task, viewer: str, admin: bool) -> TaskActions:
    """The actions offered to `viewer` on `task`: none on someone else's (unless an admin),
    and only those its state allows (the handlers check both again)."""
    if task.owner != viewer and not admin:
        return TaskActions()
    status = task.status
    return TaskActions(
        kill=allowed(status, TaskStatus.ABORTED),
        retry=status is TaskStatus.FAILED and task.n_jobs > 0 and task.workflow_id is None,
        pause=allowed(status, TaskStatus.PAUSED),
        resume=status is TaskStatus.PAUSED,
        priority=status not in TASK_FINAL and status is not TaskStatus.PENDING,
    )


# -- job counts ---------------------------------------------------------------------------------

JOB_ORDER = tuple(JobStatus)
GROUPS: Sequence[tuple[str, frozenset[JobStatus]]] = (
    ("finished", frozenset({JobStatus.FINISHED})),
    ("failed", frozenset({JobStatus.FAILED})),
    ("live", JOB_LIVE),
    ("queued", JOB_QUEUED),
    ("other", JOB_FINAL - {JobStatus.FINISHED, JobStatus.FAILED}),
)
"""How a progress bar groups job states (left to right)."""


def progress(counts: Mapping[str, int]) -> list[dict[str, Any]]:
    """A progress bar's segments: [{"group", "count", "pct"}], empty groups left out."""
    total = sum(counts.values())
    out = []
    for group, states in GROUPS:
        n = sum(counts.get(str(s), 0) for s in states)
        if n:
            out.append({"group": group, "count": n, "pct": round(100 * n / total, 2)})
    return out


def ordered_counts(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """(state, count) in the job state machine's order, zeros left out."""
    return [(str(s), counts[str(s)]) for s in JOB_ORDER if counts.get(str(s))]


# -- charts (uPlot's columnar data: x values, then one list per series) -------------------------


def timeline_chart(points: Sequence[Mapping[str, int | float]]) -> dict[str, Any]:
    """Job counts by state over time: one series per state that is ever non-zero. Points at
    the same moment (a task shorter than its number of points, in whole seconds) are one: the
    last, so x only grows as a chart's axis needs."""
    by_t: dict[float, Mapping[str, int | float]] = {}
    for p in points:
        by_t[p["t"]] = p
    points = [by_t[t] for t in sorted(by_t)]
    states = [str(s) for s in JOB_ORDER if any(p.get(str(s)) for p in points)]
    return {
        "x": [p["t"] for p in points],
        "series": [{"label": s, "values": [p.get(s, 0) for p in points]} for s in states],
    }


def series_by_label(buckets: Iterable[Any], order: Sequence[str] = ()) -> dict[str, Any]:
    """Buckets (start, count, label) as aligned series over their sorted starts (0 where a
    label has no bucket), labels in `order` first."""
    starts: set[float] = set()
    by: dict[str, dict[float, int]] = {}
    for b in buckets:
        starts.add(b.start)
        by.setdefault(b.label, {})[b.start] = by.get(b.label, {}).get(b.start, 0) + b.count
    xs = sorted(starts)
    labels = [x for x in order if x in by] + sorted(set(by) - set(order))
    return {
        "x": xs,
        "series": [{"label": lab, "values": [by[lab].get(x, 0) for x in xs]} for lab in labels],
    }


def minutes_filled(chart: dict[str, Any], since: float, until: float) -> dict[str, Any]:
    """A per-minute chart with every minute from `since` to `until` present (a quiet minute is a
    zero, not a gap the line jumps over)."""
    first = int(since // 60) * 60
    xs = list(range(first, int(until // 60) * 60 + 60, 60))
    out = []
    for s in chart["series"]:
        have = dict(zip(chart["x"], s["values"], strict=True))
        out.append(
            {"label": s["label"], "values": [have.get(float(x), have.get(x, 0)) for x in xs]}
        )
    return {"x": xs, "series": out}


def bars(buckets: Iterable[Any], label: Callable[[Any], str]) -> dict[str, Any]:
    """Buckets as categories (a histogram, failures by code): labels and counts."""
    items = list(buckets)
    return {"labels": [label(b) for b in items], "values": [b.count for b in items]}


def duration_label(b: Any) -> str:
    return f"≥ {span(b.start) or '0 s'}"


# -- the task graph -------------------------------------------------------------------------------


def edges(cw: CompiledWorkflow) -> list[dict[str, str]]:
    """The task graph's edges with how the task waits (`after`, `job i`, `by KEY`, `when`)."""
    out: list[dict[str, str]] = []
    for name in cw.order:
        t = cw.spec.task(name)
        out += [{"from": a, "to": name, "label": ""} for a in t.after]
        out += [
            {"from": d.task, "to": name, "label": "job i" if d.by == INDEX else f"by {d.by}"}
            for d in t.depends
        ]
        if t.when is not None:
            out.append({"from": t.when.task, "to": name, "label": f"when {describe(t.when)}"})
    return out


def dag(
    cw: CompiledWorkflow, tasks: Sequence[Task], counts: Mapping[str, Mapping[str, int]]
) -> dict[str, Any]:
    """Nodes (one per task of the spec: its latest iteration's state, how many iterations ran,
    its jobs' progress, a link id) and edges, with loops as clusters, for the page to lay out."""
    latest: dict[str, Task] = {}
    runs: dict[str, int] = {}
    for t in tasks:
        name = t.spec.name
        runs[name] = max(runs.get(name, 0), t.iteration)
        if name not in latest or t.iteration > latest[name].iteration:
            latest[name] = t
    nodes = []
    for name in cw.order:
        made = latest.get(name)
        job_counts = counts.get(made.id, {}) if made is not None else {}
        nodes.append(
            {
                "name": name,
                "id": made.id if made is not None else None,
                "status": str(made.status) if made is not None else "not made",
                "iteration": runs.get(name, 0),
                "loop": cw.loop_of.get(name),
                "jobs": sum(job_counts.values()),
                "done": job_counts.get(str(JobStatus.FINISHED), 0),
                "failed": job_counts.get(str(JobStatus.FAILED), 0),
            }
        )
    loops = [
        {"name": lp.name, "label": f"loop {lp.name} until {describe(lp.until)}"}
        for lp in cw.spec.loops
    ]
    return {"nodes": nodes, "edges": edges(cw), "loops": loops}
