"""The Flask app: submission and monitoring for users, the dispatch protocol for pilots.

Every route requires `Authorization: Bearer <token>`, checked once before any route against
the Identity port and the route's roles (`api.access`); the web monitor's /ui routes also take
the token from a session cookie (`api.monitor`). Bodies are decoded once into pydantic
models; errors are mapped to JSON in `api.errors`.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from skypanda import __version__
from skypanda.api import (
    access,
    audit,
    bodies,
    data,
    errors,
    jobs,
    monitor,
    monitor_data,
    panda,
    pilot_path,
    pilotzip,
    tasks,
    watches,
    webhooks,
)
from skypanda.api.bodies import TooLarge, json_object, model_body
from skypanda.api.metrics import routes as metrics_routes
from skypanda.api.params import int_arg
from skypanda.api.tracing import install as tracing_install
from skypanda.api.workflows import workflow_routes
from skypanda.domain.errors import InvalidInput
from skypanda.domain.identity import Role
from skypanda.domain.jobflow import log_key
from skypanda.domain.models import Queue, Resources, TaskSpec, jsonable
from skypanda.domain.states import JobStatus, PilotStatus
from skypanda.domain.values import Int, Text
from skypanda.formats.taskfile import parse_task
from skypanda.handlers import dispatch, queues, scale, task_actions
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from skypanda.ports import Identity

MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_TAIL_BYTES = 2**53


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterBody(_Body):
    pilot_id: str | None = Field(default=None, max_length=200)
    queue: str = Field(max_length=200)
    host: Text = Field(default="", max_length=255)
    pid: Int | None = Field(default=None, ge=0, le=2**32 - 1)
    resources: Resources = Field(default_factory=Resources)
    version: Text = Field(default="", max_length=100)
    slots: Int | None = Field(default=None, ge=1, le=1000)  # payloads at once (None: cores)


class ApplyQueuesBody(_Body):
    queues: list[Queue] = Field(min_length=1, max_length=queues.MAX_APPLY)
    dry_run: bool = False


class EndBody(_Body):
    status: PilotStatus
    reason: Text = Field(default="", max_length=2000)


ALL_PARTS = ("user", "monitor", "pilot")


def create_app(
    svc: Services,
    identity: Identity,
    parts: tuple[str, ...] = ALL_PARTS,
    *,
    trusted_proxies: int = 0,
    session_key: bytes | None = None,
    panda_ddm: str | None = None,
) -> Flask:
    """The API. `parts` picks route groups: a Cloud Function can serve users' routes (`user`,
    `monitor`) and another the pilots' (`pilot`), each scaling on its own. `trusted_proxies`:
    how many `X-Forwarded-For` hops name the client (`api.audit`). `session_key`: what the
    monitor's session cookies are sealed with (`api.monitor.session`). `panda_ddm`: the
    directory PanDA pilots stage their logs out to (`api.panda.routes`)."""
    app = Flask("skypanda", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["PANDA_DDM"] = panda_ddm
    errors.install(app)
    if "user" in parts or "monitor" in parts:  # the parts with acting routes of people
        audit.install(app, svc, trusted_proxies=trusted_proxies)
    sessions = monitor.Sessions(session_key) if "monitor" in parts else None
    from_session = None if sessions is None else monitor.finder(sessions)

    @app.before_request
    def _authenticate() -> None:
        access.authenticate(identity, from_session)

    tracing_install(app)  # the log lines' trace and labels (`wire.logs`)

    for part in parts:
        if part == "pilot":
            _pilot_routes(app, svc, identity)
            pilot_path.install(app, svc, identity)
        else:
            {"user": _user_routes, "monitor": _monitor_routes}[part](app, svc)
    if sessions is not None:
        monitor.install(app, svc, sessions)  # the web monitor's pages, under /ui
    return app


def _user_routes(app: Flask, svc: Services) -> None:
    @app.get("/v1/health")
    def health() -> Response:
        return jsonify({"status": "ok", "version": __version__})

    @app.get("/v1/whoami")
    def whoami() -> Response:
        """Who the caller is; for one who submits (a user, an admin), what they have under
        way against the deployment's limits (`domain.quota`; a limit of None: none)."""
        principal = g.principal
        me: dict[str, Any] = {"name": principal.name, "roles": sorted(principal.roles)}
        if principal.roles & {Role.USER, Role.ADMIN}:
            usage = svc.tasks.owner_usage(g.owner)
            me["usage"] = {"tasks": usage.tasks, "jobs": usage.jobs}
            me["limits"] = {"tasks": svc.quota.max_tasks, "jobs": svc.quota.max_jobs}
        return jsonify(me)

    @app.post("/v1/tasks")
    def create_task() -> tuple[Response, int]:
        with bodies.submission_slot():
            if request.mimetype in bodies.YAML:
                spec = parse_task(bodies.yaml_text(), "request body")
            else:
                spec = bodies.validate(TaskSpec, bodies.json_object())
            task = submit(svc, spec, owner=g.owner)
        return jsonify(jsonable(task)), 201

    @app.get("/v1/tasks")
    def list_tasks() -> Response:
        # Filters (owner, status, name, since, until, workflow) and a `next` cursor.
        return monitor_data.task_list(svc)

    @app.get("/v1/tasks/<task_id>")
    def get_task(task_id: str) -> Response:
        return jsonify(jsonable(svc.tasks.get_task(task_id)))

    @app.get("/v1/tasks/<task_id>/jobs")
    def list_jobs(task_id: str) -> Response:
        if "offset" not in request.args:  # paged by cursor, filtered by state and error code
            return monitor_data.job_list(svc, task_id)
        svc.tasks.get_task(task_id)  # 404 for an unknown task
        raw = request.args.get("status")
        try:
            status = JobStatus(raw) if raw else None
        except ValueError as e:
            raise InvalidInput(f"unknown job status {raw!r}") from e
        jobs = svc.jobs.list_jobs(
            task_id,
            status=status,
            limit=int_arg("limit", 1000, 1, 100_000),
            offset=int_arg("offset", 0, 0, 10**9),
        )
        return jsonify({"jobs": [jsonable(j) for j in jobs]})

    @app.post("/v1/tasks/<task_id>/kill")
    def kill_task(task_id: str) -> Response:
        task = task_actions.kill(svc, task_id, g.owner, f"killed by {g.owner}", admin=g.admin)
        return jsonify(jsonable(task))

    workflow_routes(app, svc)
    tasks.routes(app, svc)
    jobs.routes(app, svc)  # kill one job or a list of them
    webhooks.routes(app, svc)
    watches.routes(app, svc)
    app.register_blueprint(panda.client_blueprint(svc))  # panda-client's routes (api.panda)


def _monitor_routes(app: Flask, svc: Services) -> None:
    @app.get("/v1/jobs/<job_id>")
    def get_job(job_id: str) -> Response:
        job = svc.jobs.get_job(job_id)
        attempts = [jsonable(a) for a in svc.jobs.attempts(job_id)]
        return jsonify({**jsonable(job), "attempts": attempts})

    @app.get("/v1/jobs/<job_id>/log")
    def get_log(job_id: str) -> Response:
        """An attempt's log (default: the latest), streamed: never read whole into memory.
        `tail=N`: only its last N bytes (the first may be part of a character)."""
        job = svc.jobs.get_job(job_id)
        attempt = int_arg("attempt", job.attempt, 1, job.attempt)
        last = int_arg("tail", 0, 0, MAX_TAIL_BYTES) if "tail" in request.args else None
        chunks = svc.blobs.stream(log_key(job_id, attempt), last=last)  # NotFound: 404 now
        return Response(chunks, mimetype="text/plain")

    @app.get("/v1/queues")
    def list_queues() -> Response:
        return jsonify({"queues": queues.overview(svc)})

    @app.post("/v1/queues")
    def apply_queues() -> Response:
        body = model_body(ApplyQueuesBody)
        changes = queues.apply(svc, body.queues, dry_run=body.dry_run)
        return jsonify({"changes": [c.as_dict() for c in changes], "dry_run": body.dry_run})

    @app.post("/v1/queues/<name>/reset-backoff")
    def reset_backoff(name: str) -> Response:
        return jsonify(scale.reset_backoff(svc, name))

    @app.post("/v1/pilots/<pilot_id>/drain")
    def drain_pilot(pilot_id: str) -> Response:
        return jsonify(jsonable(dispatch.drain(svc, pilot_id)))

    @app.get("/v1/pilots")
    def list_pilots() -> Response:
        return monitor_data.pilot_list(svc)  # newest first, by queue and state, paged

    monitor_data.routes(app, svc)  # a task's aggregates, time windows, the queues' state

    metrics_routes(app, svc)  # GET /metrics (Prometheus)


def _pilot_routes(app: Flask, svc: Services, identity: Identity) -> None:
    @app.post("/v1/pilots")
    def register() -> tuple[Response, int]:
        body = model_body(RegisterBody)
        pilot, queue = dispatch.register(
            svc, pilot_id=body.pilot_id, queue=body.queue, host=body.host, pid=body.pid,
            resources=body.resources, version=body.version, launch_for=g.principal.launch_for,
            slots=body.slots,
        )  # fmt: skip
        reply: dict[str, Any] = {"pilot": jsonable(pilot), "queue": jsonable(queue),
                                 **pilot_path.credential(identity, pilot.id)}  # fmt: skip
        for told in ("long_poll_s", "report_delay_s"):  # its acquires' wait, its reports'
            if value := svc.settings.get(told):
                reply[told] = value
        return jsonify(reply), 201

    # The hot routes are answered by `pilot_path` in front of Flask; these answer the same for
    # what it leaves to Flask (e.g. a report with logs over its size limit)
    answers = pilot_path.ANSWERS

    @app.post("/v1/pilots/<pilot_id>/acquire")
    def acquire(pilot_id: str) -> Response:
        return jsonify(answers["acquire"](svc, identity, pilot_id, json_object()))

    @app.post("/v1/pilots/<pilot_id>/update")
    def update(pilot_id: str) -> Response:
        return jsonify(answers["update"](svc, identity, pilot_id, json_object()))

    @app.post("/v1/pilots/<pilot_id>/heartbeat")
    def heartbeat(pilot_id: str) -> Response:
        return jsonify(answers["heartbeat"](svc, identity, pilot_id, json_object()))

    @app.post("/v1/pilots/<pilot_id>/end")
    def end(pilot_id: str) -> Response:
        body = model_body(EndBody)
        return jsonify(jsonable(dispatch.end(svc, pilot_id, body.status, body.reason)))

    @app.post("/v1/jobs/<job_id>/log")
    def append_log(job_id: str) -> tuple[str, int]:
        attempt = int_arg("attempt", 0, 1, 10_000)
        if (request.content_length or 0) > dispatch.LOG_CHUNK_BYTES:
            raise TooLarge(f"a log chunk is limited to {dispatch.LOG_CHUNK_BYTES:,} bytes")
        chunk = request.get_data()
        dispatch.append_log(svc, job_id, attempt, chunk, g.principal.pilot)
        return "", 204

    pilotzip.routes(app, svc)
    data.routes(app, svc)
    # the real PanDA pilot's routes (api.panda), /server/panda and /api/v1/pilot
    app.register_blueprint(panda.blueprint(svc, app.config.get("PANDA_DDM")))
