"""Workflow routes: submit, list, show (per-task counts), export the task graph, retry, kill.

A workflow without a job graph is posted as JSON `{"workflow": {...}}` or as YAML. One with a
job graph is posted as JSON lines (`application/x-ndjson`): the first line is
`{"workflow": {...}}`, every further line one job of the graph. The body is read as a stream,
so a graph of a million jobs never sits in memory whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, g, jsonify, request

from skypanda.api import bodies, monitor_data
from skypanda.domain.errors import InvalidInput
from skypanda.domain.export import FORMATS, export
from skypanda.domain.models import jsonable
from skypanda.domain.workflow import Workflow, WorkflowSpec
from skypanda.formats.taskfile import parse_workflow
from skypanda.handlers import known, task_actions, workflow_actions
from skypanda.handlers import workflow as flows
from skypanda.handlers.services import Services

MAX_GRAPH_BYTES = 512 * 1024 * 1024
"""A job graph (JSON lines): 2,000,000 jobs of about 250 bytes. It is checked whole before
anything is stored, so it is held in memory while it is."""
NDJSON = ("application/x-ndjson", "application/jsonl", "application/json-lines")


def _spec(data: Any) -> WorkflowSpec:
    if not isinstance(data, dict) or not isinstance(data.get("workflow"), dict):
        raise InvalidInput('the body must be {"workflow": {...}}')
    return bodies.validate(WorkflowSpec, data["workflow"], prefix="workflow.")


def _ndjson() -> tuple[WorkflowSpec, Iterator[bytes]]:
    request.max_content_length = MAX_GRAPH_BYTES
    body = bodies.lines(request.stream)
    first = next(body, b"")
    head = bodies.parse_json(first, 'line 1 ({"workflow": {...}})')
    return _spec(head), body


def view(svc: Services, wf: Workflow) -> dict[str, Any]:
    """The workflow with each task's state and job counts (latest iteration first listed)."""
    tasks = []
    for t in svc.workflows.workflow_tasks(wf.id):
        counts = {str(k): v for k, v in svc.tasks.job_counts(t.id).items()}
        tasks.append(
            {
                "id": t.id,
                "name": t.spec.name,
                "iteration": t.iteration,
                "status": str(t.status),
                "reason": t.reason,
                "n_jobs": t.n_jobs,
                "job_counts": counts,
            }
        )
    return {**jsonable(wf), "tasks": tasks}


def workflow_routes(app: Flask, svc: Services) -> None:
    @app.post("/v1/workflows")
    def create_workflow() -> tuple[Response, int]:
        graph = None
        with bodies.submission_slot():
            if request.mimetype in NDJSON:
                spec, graph = _ndjson()
            elif request.mimetype in bodies.YAML:
                spec = parse_workflow(bodies.yaml_text(), "request body")
            else:
                spec = _spec(bodies.json_body())
            wf = flows.submit_workflow(svc, spec, owner=g.owner, graph=graph)
        return jsonify(view(svc, wf)), 201

    @app.get("/v1/workflows")
    def list_workflows() -> Response:
        # Filters (owner, status, name, since, until) and a `next` cursor.
        return monitor_data.workflow_list(svc)

    @app.get("/v1/workflows/<workflow_id>")
    def get_workflow(workflow_id: str) -> Response:
        return jsonify(view(svc, svc.workflows.get_workflow(workflow_id)))

    @app.get("/v1/workflows/<workflow_id>/dag")
    def get_dag(workflow_id: str) -> Response:
        fmt = request.args.get("format", "dot")
        if fmt not in FORMATS:
            raise InvalidInput(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        wf = svc.workflows.get_workflow(workflow_id)
        states = {t.spec.name: str(t.status) for t in svc.workflows.workflow_tasks(workflow_id)}
        text = export(known.compiled(svc, wf.id), fmt, states)
        return Response(text, mimetype="text/plain")

    @app.post("/v1/workflows/<workflow_id>/retry")
    def retry_workflow(workflow_id: str) -> Response:
        n = workflow_actions.retry(svc, workflow_id, g.owner, admin=g.admin)
        return jsonify({**view(svc, svc.workflows.get_workflow(workflow_id)), "jobs_reset": n})

    @app.post("/v1/workflows/<workflow_id>/kill")
    def kill_workflow(workflow_id: str) -> Response:
        return jsonify(
            view(
                svc,
                workflow_actions.kill(
                    svc, workflow_id, f"killed by {g.owner}", g.owner, admin=g.admin
                ),
            )
        )

    @app.post("/v1/tasks/<task_id>/retry")
    def retry_task(task_id: str) -> Response:
        n = task_actions.retry(svc, task_id, g.owner, admin=g.admin)
        return jsonify({**jsonable(svc.tasks.get_task(task_id)), "jobs_reset": n})
