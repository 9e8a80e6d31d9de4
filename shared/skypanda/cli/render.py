"""Plain-text views of API objects for the terminal."""

from __future__ import annotations

import time
from typing import Any

from skypanda.domain.states import JOB_QUEUED
from skypanda.wire.codes import ErrorCode


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def print_task(task: dict[str, Any], queued_priority: int | None = None) -> str:
    """A task: state (paused shows here), queue, priority (`queued_priority`: what its queued
    jobs have now, when `skypanda priority` changed it), jobs by state, times."""
    spec = task["spec"]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(task["job_counts"].items())) or "none yet"
    prio = f"priority {spec['priority']}"
    if queued_priority is not None and queued_priority != spec["priority"]:
        prio = f"priority {queued_priority} (changed; submitted with {spec['priority']})"
    lines = [
        f"task     {task['id']}  {spec['name']}",
        f"status   {task['status']}" + (f"  ({task['reason']})" if task["reason"] else ""),
        f"queue    {spec['queue']}  {prio}  max_attempts {spec['max_attempts']}",
        f"jobs     {task['n_jobs']}: {counts}",
        f"created  {_when(task['created_at'])}  updated {_when(task['updated_at'])}",
    ]
    return "\n".join(lines)


def error_name(code: int | None) -> str:
    """An error code with its name (`1201 SIGTERM`), or `-`."""
    if code is None:
        return "-"
    try:
        return f"{code} {ErrorCode(code).name}"
    except ValueError:
        return str(code)


def print_jobs(jobs: list[dict[str, Any]], paused: bool = False) -> str:
    """One line per job; a paused task's queued jobs say so (they are held back, not waiting
    for parents)."""
    header = (
        f"{'JOB':<28} {'INDEX':>5} {'STATUS':<16} {'PRIO':>4} {'ATT':>3} {'EXIT':>4} "
        f"{'ERROR':<22} {'PILOT':<14} DIAG"
    )
    rows = [header]
    for j in jobs:
        exit_code = "-" if j["exit_code"] is None else str(j["exit_code"])
        state = f"{j['status']}, paused" if paused and j["status"] in JOB_QUEUED else j["status"]
        rows.append(
            f"{j['id']:<28} {j['index']:>5} {state:<16} {j['priority']:>4} {j['attempt']:>3} "
            f"{exit_code:>4} {error_name(j['error_code']):<22} {j['pilot_id'] or '-':<14} "
            f"{j['error_diag'][:60]}"
        )
    return "\n".join(rows)


def print_pilots(pilots: list[dict[str, Any]]) -> str:
    rows = [f"{'PILOT':<16} {'QUEUE':<12} {'STATUS':<10} {'HOST':<16} {'HEARD':<19} REASON"]
    for p in pilots:
        rows.append(
            f"{p['id']:<16} {p['queue']:<12} {p['status']:<10} {p['host'] or '-':<16} "
            f"{_when(p['heartbeat_at']):<19} {p['reason']}"
        )
    return "\n".join(rows)


def print_failures(result: dict[str, Any], failures: list[dict[str, Any]], home: str | None) -> str:
    """Why an ended task or workflow failed: its reason, its first failed jobs (error, diagnosis,
    last log lines) and the commands that show more."""
    lines = [f"reason: {result['reason']}"] if result.get("reason") else []
    n_failed = result["jobs"].get("failed", 0)
    if failures:
        lines.append(f"failed jobs ({len(failures)} of {n_failed} shown):")
    for f in failures:
        exit_code = "-" if f["exit_code"] is None else f["exit_code"]
        lines.append(
            f"  job {f['id']} (index {f['index']}, attempt {f['attempt']}): exit {exit_code}, "
            f"error {error_name(f['error_code'])}"
        )
        if f["error_diag"]:
            lines.append(f"    diagnosis: {f['error_diag'][:300]}")
        if f["log_tail"]:
            lines.append(f"    log, last {len(f['log_tail'])} lines:")
            lines.extend(f"    | {line[:200]}" for line in f["log_tail"])
    where = f" --home {home}" if home else ""
    if failures:
        first = failures[0]
        lines.append(
            f"more: skypanda jobs {first['task_id']} --status failed{where}; "
            f"skypanda logs {first['id']}{where}"
        )
    elif "tasks" in result:
        lines.append(f"more: skypanda status {result['id']}{where}")
    else:
        lines.append(f"more: skypanda jobs {result['id']}{where}")
    return "\n".join(lines)
