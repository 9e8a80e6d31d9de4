"""The monitor's pages: each reads what it shows through the `Views` port (paged by index,
aggregates bounded) and the stores' point reads, and renders one template."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import yaml
from flask import Blueprint, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as WResponse

from skypanda import __version__
from skypanda.api.monitor import shape
from skypanda.api.monitor.actions import NOTES
from skypanda.api.monitor.charts import TaskCharts
from skypanda.api.params import int_arg, parse_moment, parse_states
from skypanda.domain.errors import NotFound
from skypanda.domain.fleet import Pilot
from skypanda.domain.job_kill import killable
from skypanda.domain.jobflow import log_key
from skypanda.domain.records import Attempt, Job
from skypanda.domain.states import (
    JOB_FINAL,
    JOB_LIVE,
    TASK_FINAL,
    WORKFLOW_FINAL,
    JobStatus,
    PilotStatus,
    TaskStatus,
    WorkflowStatus,
)
from skypanda.handlers import known
from skypanda.handlers.services import Services
from skypanda.ports.views import JobQuery, TaskQuery, Views, WorkflowQuery

PAGE = 50
TAIL_BYTES = 64 * 1024
"""The log tail a job page shows (the whole log is a download)."""
WINDOWS = {"1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}
ERROR_CODE_RANGE = (-(2**31), 2**31 - 1)


def views(svc: Services) -> Views:
    return svc.store


def counts_of(svc: Services, task_id: str) -> dict[str, int]:
    return {str(k): v for k, v in svc.tasks.job_counts(task_id).items()}


def read_tail(svc: Services, job_id: str, attempt: int, n: int = TAIL_BYTES) -> str | None:
    """The last `n` bytes of an attempt's log as text (None: no log yet)."""
    try:
        data = b"".join(svc.blobs.stream(log_key(job_id, attempt), last=n))
    except NotFound:
        return None
    return data.decode("utf-8", errors="replace")


def _paging(cursor: str | None) -> dict[str, str | None]:
    """The URLs of this list's first and next pages (the same filters; `done` dropped)."""
    args = [(k, v) for k, v in request.args.items(multi=True) if k not in ("cursor", "done", "n")]
    first = request.path + ("?" + urlencode(args) if args else "")
    later = None
    if cursor:
        later = request.path + "?" + urlencode([*args, ("cursor", cursor)])
    return {"first": first, "next": later, "paged": first if "cursor" in request.args else None}


def _note() -> str:
    """What the action just done did, worded by the monitor (`actions.NOTES`)."""
    text = NOTES.get(request.args.get("done", ""))
    if text is None:
        return ""
    raw = request.args.get("n", "0")
    n = int(raw) if raw.isdigit() else 0
    return text.format(jobs=f"{n:,} job" + ("" if n == 1 else "s"))


def _owner_filter(default: str) -> tuple[str | None, str]:
    """The owner a list shows (None: everyone's) and the field's value; `*` means everyone."""
    raw = request.args.get("owner", default).strip()
    return (None if raw in ("", "*") else raw), raw


def _list_filters(states: type[TaskStatus] | type[WorkflowStatus]) -> dict[str, Any]:
    """A list page's filters from its query string (the tasks and workflows lists share them):
    owner (yours by default), states, name prefix, created since/until."""
    owner, owner_raw = _owner_filter(g.principal.name)
    return {
        "owner": owner,
        "owner_raw": owner_raw,
        "statuses": parse_states(request.args.getlist("status"), states),
        "name": request.args.get("name", "").strip(),
        "since": parse_moment(request.args.get("since", ""), "since"),
        "until": parse_moment(request.args.get("until", ""), "until"),
    }


def _list_context(
    f: dict[str, Any], states: type[TaskStatus] | type[WorkflowStatus]
) -> dict[str, Any]:
    """What a list page's filter form shows back."""
    return {
        "owner": f["owner_raw"],
        "statuses": f["statuses"],
        "all_statuses": list(states),
        "name": f["name"],
        "since": shape.to_local_input(f["since"]),
        "until": shape.to_local_input(f["until"]),
    }


def _cursor() -> str | None:
    return request.args.get("cursor") or None


def _limit() -> int:
    return int_arg("limit", PAGE, 1, 200)


def routes(bp: Blueprint, svc: Services, task_charts: TaskCharts) -> None:
    @bp.context_processor
    def _common() -> dict[str, Any]:
        session = g.get("monitor_session")
        principal = g.get("principal")
        return {
            "me": principal.name if principal is not None else "",
            "admin": bool(principal is not None and principal.admin),
            "csrf": session.csrf if session is not None else "",
            "version": __version__,
            "now": svc.clock.now(),
            "nav": request.endpoint,
        }

    @bp.get("/")
    def home() -> WResponse:
        return redirect(url_for("monitor.tasks"))

    @bp.get("/tasks")
    def tasks() -> str:
        started = time.perf_counter()
        f = _list_filters(TaskStatus)
        query = TaskQuery(
            owner=f["owner"], statuses=f["statuses"], name_prefix=f["name"],
            since=f["since"], until=f["until"],
        )  # fmt: skip
        page = views(svc).task_page(query, cursor=_cursor(), limit=_limit())
        counts = {t.id: task_charts.counts(t) for t in page.items}
        return render_template(
            "monitor/tasks.html", page=page, counts=counts, **_list_context(f, TaskStatus),
            paging=_paging(page.cursor), final=TASK_FINAL, progress=shape.progress,
            took=time.perf_counter() - started,
        )  # fmt: skip

    @bp.get("/workflows")
    def workflows() -> str:
        f = _list_filters(WorkflowStatus)
        query = WorkflowQuery(
            owner=f["owner"], statuses=f["statuses"], name_prefix=f["name"],
            since=f["since"], until=f["until"],
        )  # fmt: skip
        page = views(svc).workflow_page(query, cursor=_cursor(), limit=_limit())
        return render_template(
            "monitor/workflows.html", page=page, **_list_context(f, WorkflowStatus),
            paging=_paging(page.cursor), final=WORKFLOW_FINAL,
        )  # fmt: skip

    @bp.get("/tasks/<task_id>")
    def task(task_id: str) -> str:
        t = svc.tasks.get_task(task_id)
        v = views(svc)
        states = parse_states(request.args.getlist("state"), JobStatus, "state")
        code = request.args.get("error_code", "").strip()
        error_code = int_arg("error_code", 0, *ERROR_CODE_RANGE) if code else None
        jobs = v.job_page(
            task_id, JobQuery(statuses=states, error_code=error_code),
            cursor=request.args.get("cursor") or None, limit=int_arg("limit", PAGE, 1, 500),
        )  # fmt: skip
        counts = {str(k): n for k, n in t.job_counts.items()}
        charts = task_charts.embedded(t)
        spec = yaml.safe_dump(
            t.spec.model_dump(mode="json", by_alias=True, exclude_defaults=True),
            sort_keys=False, allow_unicode=True,
        )  # fmt: skip
        return render_template(
            "monitor/task.html", task=t, counts=shape.ordered_counts(counts),
            bar_segments=shape.progress(counts), jobs=jobs, note=_note(),
            errors=v.error_summary(task_id, limit=20),
            charts=charts, spec=spec, actions=shape.task_actions(t, g.principal.name, g.admin),
            states=states, all_states=list(JobStatus), error_code=code,
            paging=_paging(jobs.cursor), final=t.status in TASK_FINAL,
            bad=t.status in shape.TASK_BAD,
        )  # fmt: skip

    @bp.get("/jobs/<job_id>")
    def job(job_id: str) -> str:
        j = svc.jobs.get_job(job_id)
        attempts = svc.jobs.attempts(job_id)
        shown = int_arg("attempt", j.attempt, 1, max(j.attempt, 1))
        return render_template(
            "monitor/job.html", job=j, task=svc.tasks.get_task(j.task_id, counts=False),
            attempts=_attempt_rows(svc, j, attempts), shown=shown,
            tail=read_tail(svc, job_id, shown), tail_bytes=TAIL_BYTES,
            live=j.status in JOB_LIVE and shown == j.attempt, ended=j.status in JOB_FINAL,
            note=_note(), can_kill=(j.owner == g.principal.name or g.admin) and killable(j),
        )  # fmt: skip

    @bp.get("/workflows/<workflow_id>")
    def workflow(workflow_id: str) -> str:
        wf = svc.workflows.get_workflow(workflow_id)
        tasks = svc.workflows.workflow_tasks(workflow_id)
        counts = {t.id: task_charts.counts(t) for t in tasks}
        cw = known.compiled(svc, workflow_id)
        graph = shape.dag(cw, tasks, counts)
        order = {name: i for i, name in enumerate(cw.order)}
        rows = sorted(tasks, key=lambda t: (t.iteration, order.get(t.spec.name, 0)))
        mine = wf.owner == g.principal.name or g.admin
        return render_template(
            "monitor/workflow.html", wf=wf, graph=graph, tasks=rows, counts=counts,
            progress=shape.progress, can_kill=mine and wf.status not in
            (WorkflowStatus.DONE, WorkflowStatus.ABORTED, WorkflowStatus.SKIPPED),
            can_retry=mine and wf.status is WorkflowStatus.FAILED, final=WORKFLOW_FINAL,
            task_final=TASK_FINAL, note=_note(), bad=wf.status in shape.WORKFLOW_BAD,
        )  # fmt: skip

    @bp.get("/queues")
    def queues() -> str:
        v = views(svc)
        chosen = request.args.get("queue") or None
        statuses = parse_states(request.args.getlist("status"), PilotStatus)
        pilots = v.pilot_page(
            queue=chosen, statuses=sorted(statuses), cursor=request.args.get("cursor") or None,
            limit=int_arg("limit", PAGE, 1, 500),
        )  # fmt: skip
        queues = {q.name: q for q in svc.fleet.list_queues()}
        activated = svc.jobs.list_activated(chosen, 20) if chosen in queues else []
        return render_template(
            "monitor/queues.html", views=v.queue_views(), queues=queues, chosen=chosen,
            pilots=pilots, statuses=statuses, all_statuses=list(PilotStatus),
            activated=activated, paging=_paging(pilots.cursor),
        )  # fmt: skip

    @bp.get("/plots")
    def plots() -> str:
        v = views(svc)
        window = request.args.get("window", "1h")
        seconds = WINDOWS.get(window, 3600)
        owner, owner_raw = _owner_filter("*")
        now = svc.clock.now()
        since = now - seconds
        ended = shape.series_by_label(
            v.ended_per_minute(since=since, owner=owner), [str(s) for s in JOB_FINAL]
        )
        charts = {
            "throughput": shape.minutes_filled(ended, since, now),
            "failures": shape.bars(
                v.failures_by_code(since=since, owner=owner, limit=20), lambda b: str(b.label)
            ),
        }
        return render_template(
            "monitor/plots.html", charts=charts, window=window, windows=list(WINDOWS),
            owner=owner_raw,
        )  # fmt: skip


def _attempt_rows(svc: Services, job: Job, attempts: list[Attempt]) -> list[dict[str, Any]]:
    """Each attempt with where it ran (the pilot's queue and host), newest first."""
    pilots: dict[str, Pilot | None] = {}
    for a in attempts:
        if a.pilot_id and a.pilot_id not in pilots:
            try:
                pilots[a.pilot_id] = svc.fleet.get_pilot(a.pilot_id)
            except NotFound:
                pilots[a.pilot_id] = None
    rows = []
    for a in sorted(attempts, key=lambda a: a.attempt, reverse=True):
        p = pilots.get(a.pilot_id or "")
        rows.append(
            {
                "a": a,
                "queue": p.queue if p is not None else job.queue,
                "host": p.host if p is not None else "",
                "current": a.attempt == job.attempt,
            }
        )
    return rows
