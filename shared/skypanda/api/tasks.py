"""Task action routes: finish, pause, resume, reassign, priority (kill and retry are in app
and workflows)."""

from __future__ import annotations

from flask import Flask, Response, g, jsonify
from pydantic import BaseModel, ConfigDict

from skypanda.api.bodies import model_body
from skypanda.domain.models import jsonable
from skypanda.domain.values import Flag, Priority
from skypanda.handlers import task_actions
from skypanda.handlers.services import Services


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FinishBody(_Body):
    hard: Flag = False


class ReassignBody(_Body):
    queue: str


class PriorityBody(_Body):
    priority: Priority


def routes(app: Flask, svc: Services) -> None:
    @app.post("/v1/tasks/<task_id>/finish")
    def finish_task(task_id: str) -> Response:
        body = model_body(FinishBody)
        return jsonify(
            jsonable(task_actions.finish(svc, task_id, g.owner, hard=body.hard, admin=g.admin))
        )

    @app.post("/v1/tasks/<task_id>/pause")
    def pause_task(task_id: str) -> Response:
        return jsonify(jsonable(task_actions.pause(svc, task_id, g.owner, admin=g.admin)))

    @app.post("/v1/tasks/<task_id>/resume")
    def resume_task(task_id: str) -> Response:
        return jsonify(jsonable(task_actions.resume(svc, task_id, g.owner, admin=g.admin)))

    @app.post("/v1/tasks/<task_id>/reassign")
    def reassign_task(task_id: str) -> Response:
        body = model_body(ReassignBody)
        moved = task_actions.reassign(svc, task_id, g.owner, body.queue, admin=g.admin)
        return jsonify({"task_id": task_id, "queue": body.queue, "jobs_moved": moved})

    @app.post("/v1/tasks/<task_id>/priority")
    def set_priority(task_id: str) -> Response:
        body = model_body(PriorityBody)
        changed = task_actions.set_priority(svc, task_id, g.owner, body.priority, admin=g.admin)
        return jsonify({"task_id": task_id, "priority": body.priority, "jobs_changed": changed})
