"""Plain-text views of API objects for the terminal."""

from __future__ import annotations

import time
from typing import Any

from skypanda.wire.codes import ErrorCode


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def print_task(task: dict[str, Any]) -> str:
    spec = task["spec"]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(task["job_counts"].items())) or "none yet"
    lines = [
        f"task     {task['id']}  {spec['name']}",
        f"status   {task['status']}" + (f"  ({task['reason']})" if task["reason"] else ""),
        f"queue    {spec['queue']}  priority {spec['priority']}  "
        f"max_attempts {spec['max_attempts']}",
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


def print_jobs(jobs: list[dict[str, Any]]) -> str:
    header = (
        f"{'JOB':<28} {'INDEX':>5} {'STATUS':<10} {'ATT':>3} {'EXIT':>4} {'ERROR':<22} "
        f"{'PILOT':<14} DIAG"
    )
    rows = [header]
    for j in jobs:
        exit_code = "-" if j["exit_code"] is None else str(j["exit_code"])
        rows.append(
            f"{j['id']:<28} {j['index']:>5} {j['status']:<10} {j['attempt']:>3} {exit_code:>4} "
            f"{error_name(j['error_code']):<22} {j['pilot_id'] or '-':<14} {j['error_diag'][:60]}"
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
