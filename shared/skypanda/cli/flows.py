"""CLI support for workflows: send one (with its job graph), wait for it, show it."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import click

from skypanda.cli.connect import FINAL_TASK_STATES, BadInput, call
from skypanda.domain.states import WORKFLOW_FINAL
from skypanda.pilot.client import ApiClient

if TYPE_CHECKING:
    from skypanda.domain.workflow import WorkflowSpec

FINAL_WORKFLOW_STATES = {str(s) for s in WORKFLOW_FINAL}
ENDED_JOB_STATES = ("finished", "failed", "cancelled", "closed")


def is_workflow_id(ident: str) -> bool:
    return ident.startswith("w")


def is_workflow_spec(spec: object) -> TypeGuard[WorkflowSpec]:
    """Whether a loaded file is a workflow (the models are imported once a file is read)."""
    from skypanda.domain.workflow import WorkflowSpec

    return isinstance(spec, WorkflowSpec)


def send(api: ApiClient, spec: WorkflowSpec, source: Path) -> dict[str, Any]:
    """Submit a workflow; its job graph file (if any) goes along as JSON lines."""
    from skypanda.formats.taskfile import graph_path

    body = {"workflow": spec.model_dump(mode="json", by_alias=True)}
    graph = graph_path(spec, source)
    if graph is None:
        return dict(call(api, "POST", "/v1/workflows", body))
    try:
        lines = graph.read_bytes()
    except OSError as e:
        raise BadInput(f"{source}: cannot read graph file {graph}: {e}") from e
    raw = json.dumps(body).encode() + b"\n" + lines
    return dict(call(api, "POST", "/v1/workflows", raw=raw, content_type="application/x-ndjson"))


def total_jobs(view: dict[str, Any]) -> int:
    return sum(int(t["n_jobs"]) for t in view["tasks"])


def poll(
    fetch: Callable[[], dict[str, Any]],
    progress: Callable[[dict[str, Any]], tuple[int, int]],
    final: set[str],
    *,
    quiet: bool,
) -> dict[str, Any]:
    """Fetch until the object's status is in `final`, with a progress bar of (jobs ended,
    jobs in all) on stderr when it is a terminal and not `quiet`."""
    show = not quiet and sys.stderr.isatty()
    obj = fetch()
    bar_cm = click.progressbar(length=max(progress(obj)[1], 1), label="jobs", file=sys.stderr)
    with bar_cm if show else contextlib.nullcontext(None) as bar:
        seen = 0
        while True:
            ended, total = progress(obj)
            if bar is not None:
                bar.length = max(total, 1)  # a workflow's loops add jobs as they go
                if ended > seen:
                    bar.update(ended - seen)
                    seen = ended
            if obj["status"] in final:
                return obj
            time.sleep(0.25)
            obj = fetch()


def _ended(counts: dict[str, int]) -> int:
    return sum(counts.get(s, 0) for s in ENDED_JOB_STATES)


def wait(api: ApiClient, workflow_id: str, *, quiet: bool) -> dict[str, Any]:
    """Poll until the workflow ends."""
    return poll(
        lambda: dict(call(api, "GET", f"/v1/workflows/{workflow_id}")),
        lambda v: (sum(_ended(t["job_counts"]) for t in v["tasks"]), total_jobs(v)),
        FINAL_WORKFLOW_STATES,
        quiet=quiet,
    )


def wait_task(api: ApiClient, task_id: str, *, quiet: bool) -> dict[str, Any]:
    """Poll until the task ends."""
    return poll(
        lambda: dict(call(api, "GET", f"/v1/tasks/{task_id}")),
        lambda t: (_ended(t["job_counts"]), int(t["n_jobs"])),
        FINAL_TASK_STATES,
        quiet=quiet,
    )


def outcome(view: dict[str, Any], seconds: float) -> dict[str, Any]:
    jobs: dict[str, int] = {}
    for t in view["tasks"]:
        for s, n in t["job_counts"].items():
            jobs[s] = jobs.get(s, 0) + n
    return {
        "id": view["id"],
        "name": view["spec"]["name"],
        "status": view["status"],
        "reason": view["reason"],
        "jobs": jobs,
        "tasks": {_task_name(t): t["status"] for t in view["tasks"]},
        "seconds": round(seconds, 3),
    }


def _task_name(t: dict[str, Any]) -> str:
    return t["name"] if t["iteration"] == 1 else f"{t['name']}#{t['iteration']}"


STATE_COLUMNS = ("defined", "activated", "sent", "running", "finished", "failed", "cancelled")


def render(view: dict[str, Any]) -> str:
    """A workflow and its tasks, one line per task (and per loop iteration) with job counts."""
    lines = [
        f"workflow {view['id']}  {view['spec']['name']}",
        f"status   {view['status']}" + (f"  ({view['reason']})" if view["reason"] else ""),
        "",
        f"{'TASK':<22} {'STATUS':<10} {'JOBS':>7} "
        + " ".join(f"{c.upper():>9}" for c in STATE_COLUMNS),
    ]
    for t in view["tasks"]:
        counts = t["job_counts"]
        live = counts.get("starting", 0) + counts.get("running", 0)
        cells = [counts.get(c, 0) if c != "running" else live for c in STATE_COLUMNS]
        lines.append(
            f"{_task_name(t):<22} {t['status']:<10} {t['n_jobs']:>7} "
            + " ".join(f"{n:>9}" for n in cells)
        )
        if t["reason"] and t["status"] in ("skipped", "cancelled"):
            lines.append(f"{'':<22} {t['reason']}")
    return "\n".join(lines)


SHOWN_FAILURES = 3
LOG_LINES = 5


def failures(api: Any, result: dict[str, Any], limit: int = SHOWN_FAILURES) -> list[dict[str, Any]]:
    """Up to `limit` failed jobs of an ended task or workflow (`result` from `outcome`), each
    with its error and the last lines of its log: what a failed `run` or `submit --wait`
    shows. Best effort: a view that cannot be read is left out, never an error."""
    try:
        if "tasks" in result:
            view = call(api, "GET", f"/v1/workflows/{result['id']}")
            task_ids = [t["id"] for t in view["tasks"] if t["job_counts"].get("failed")]
        else:
            task_ids = [result["id"]]
        found: list[dict[str, Any]] = []
        for task_id in task_ids:
            params = {"status": "failed", "limit": limit - len(found)}
            jobs = call(api, "GET", f"/v1/tasks/{task_id}/jobs", params=params)["jobs"]
            found.extend({**_failure(j), "log_tail": _log_tail(api, j["id"])} for j in jobs)
            if len(found) >= limit:
                break
    except click.ClickException:
        return []
    return found


def _failure(job: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "task_id", "index", "attempt", "exit_code", "error_code", "error_diag")
    return {k: job.get(k) for k in keys}


def _log_tail(api: Any, job_id: str) -> list[str]:
    try:
        text = call(api, "GET", f"/v1/jobs/{job_id}/log", params={"tail": 4096})
    except click.ClickException:
        return []  # no log (the job never started)
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    return lines[-LOG_LINES:]
