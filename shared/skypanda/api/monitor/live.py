"""What the monitor's pages fetch again while one looks (GET, JSON, the session cookie is
enough): the states and job counts of the tasks and workflows on screen, a job's state and its
log's tail; and a whole log as a download."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from skypanda.api.monitor import shape
from skypanda.api.monitor.charts import TaskCharts
from skypanda.api.monitor.pages import counts_of, read_tail
from skypanda.api.params import int_arg
from skypanda.domain.errors import InvalidInput, NotFound
from skypanda.domain.jobflow import log_key
from skypanda.domain.states import JOB_FINAL, JOB_LIVE, TASK_FINAL, WORKFLOW_FINAL
from skypanda.handlers.services import Services

MAX_IDS = 100
LIVE_TAIL = 64 * 1024


def routes(bp: Blueprint, svc: Services, task_charts: TaskCharts) -> None:
    @bp.get("/live/tasks/<task_id>/charts/<name>")
    def live_chart(task_id: str, name: str) -> Response:
        """One chart of a task page, for a task too big to carry it in the page (`charts`)."""
        return jsonify(task_charts.chart(svc.tasks.get_task(task_id, counts=False), name))

    @bp.get("/live/tasks")
    def live_tasks() -> Response:
        """`?task=ID&workflow=ID...`: each one's state (and a task's job counts)."""
        task_ids = request.args.getlist("task")
        workflow_ids = request.args.getlist("workflow")
        if len(task_ids) + len(workflow_ids) > MAX_IDS:
            raise InvalidInput(f"ask for at most {MAX_IDS} tasks and workflows at once")
        tasks = {}
        for task_id in dict.fromkeys(task_ids):
            try:
                t = svc.tasks.get_task(task_id, counts=False)
            except NotFound:
                continue
            counts = counts_of(svc, task_id)
            tasks[task_id] = {
                "status": str(t.status),
                "final": t.status in TASK_FINAL,
                "counts": counts,
                "total": sum(counts.values()),
                "progress": shape.progress(counts),
            }
        workflows = {}
        for wf_id in dict.fromkeys(workflow_ids):
            try:
                wf = svc.workflows.get_workflow(wf_id)
            except NotFound:
                continue
            workflows[wf_id] = {"status": str(wf.status), "final": wf.status in WORKFLOW_FINAL}
        return jsonify({"tasks": tasks, "workflows": workflows})

    @bp.get("/live/jobs/<job_id>")
    def live_job(job_id: str) -> Response:
        """A job's state and the tail of one attempt's log (default: the current one)."""
        job = svc.jobs.get_job(job_id)
        attempt = int_arg("attempt", job.attempt, 1, max(job.attempt, 1))
        return jsonify(
            {
                "status": str(job.status),
                "attempt": job.attempt,
                "live": job.status in JOB_LIVE,
                "ended": job.status in JOB_FINAL,
                "tail": read_tail(svc, job_id, attempt, LIVE_TAIL),
            }
        )

    @bp.get("/jobs/<job_id>/log")
    def job_log(job_id: str) -> Response:
        """One attempt's whole log, streamed as a download (never read whole into memory)."""
        job = svc.jobs.get_job(job_id)
        attempt = int_arg("attempt", job.attempt, 1, max(job.attempt, 1))
        chunks = svc.blobs.stream(log_key(job_id, attempt))  # NotFound: 404 before any byte
        name = f"{job_id}-attempt{attempt}.log"
        return Response(
            chunks,
            mimetype="text/plain",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
