"""The routes panda-client 2.2.0 (`pandaclient.Client`, `prun`, `pbook`) speaks, over
skypanda's handlers (a Flask blueprint under `/api/v1`).

Authentication and the route table are the app's (`api.access`): the client sends its token
as `Authorization: Bearer` (`PANDA_AUTH=oidc`); without a valid one it gets the same 401 as
every route. Bodies are JSON (`task/submit` and the task commands), queries are GET
arguments. Every answer is PanDA's envelope `{"success", "message", "data"}`; a refusal is
`success: false` with a message naming the problem and PanDA's return code in `data` (2 no
such task, 3 not yours, 4 not in a state for it, 101 a bad jediTaskID), with HTTP 200 as
panda-server answers: the client shows the message of a 200 (it prints only the raw body of
any other status). A retryable failure of the backend keeps its 503.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from skypanda import __version__
from skypanda.api import bodies
from skypanda.api.panda import client_files
from skypanda.api.panda import client_mapping as cm
from skypanda.api.panda import client_views as cv
from skypanda.api.panda.mapping import PandaInputError, job_id_of, panda_id
from skypanda.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, SkypandaError
from skypanda.domain.job_kill import MAX_KILL_JOBS, WRITTEN, KillResult
from skypanda.domain.models import Task, TaskSpec
from skypanda.domain.states import TaskStatus
from skypanda.handlers import job_actions, task_actions
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from skypanda.ports.views import MAX_PAGE, TaskQuery

MAX_BODY_BYTES = 8 * 1024 * 1024
"""A panda-client request (a task's parameters with a long pfnList at most)."""
MAX_JOB_IDS = 5000
"""PandaIDs in one `job/get_description`."""
MAX_SCANNED = 5000
"""Tasks read at most to answer one `get_tasks_detailed_info_since` (bounded work)."""
COUNTED = 100
"""Tasks whose jobs are counted (progress) in one `get_tasks_detailed_info_since`: a count is
an aggregation per job state, so a pbook show of 1000 tasks counts only the newest."""
_NOT_UNIQUE = frozenset({TaskStatus.FAILED, TaskStatus.ABORTED, TaskStatus.SKIPPED,
                         TaskStatus.CANCELLED})  # fmt: skip
"""A task ended so that its name may be used again under `uniqueTaskName`."""

_COMMAND_FIELDS = {
    "kill": frozenset({"task_id", "broadcast"}),
    "finish": frozenset({"task_id", "soft", "broadcast"}),
    "retry": frozenset({"task_id", "new_parameters", "no_child_retry", "discard_events",
                        "disable_staging_mode", "keep_gshare_priority",
                        "ignore_hard_exhausted"}),
}  # fmt: skip


def blueprint(svc: Services) -> Blueprint:
    """panda-client's routes (endpoints `panda_client.*` in `api.access.ROUTE_ROLES`)."""
    bp = Blueprint("panda_client", __name__, url_prefix="/api/v1")

    @bp.errorhandler(SkypandaError)
    def _refused(e: SkypandaError) -> tuple[Response, int]:
        if "principal" not in g:  # refused by `api.access` itself: its answer, as everywhere
            return jsonify(e.to_dict()), e.http_status
        g.refused_status = e.http_status  # what the audit trail records (`api.audit`)
        status = e.http_status if e.retryable else 200
        return jsonify(cv.envelope(False, e.message, _code(e))), status

    @bp.get("/system/is_alive")
    def is_alive() -> Response:
        return jsonify(cv.envelope(True, "alive", {"server": "skypanda", "version": __version__}))

    _task_routes(bp, svc)
    _command_routes(bp, svc)
    _read_routes(bp, svc)
    client_files.routes(bp)
    return bp


def _task_routes(bp: Blueprint, svc: Services) -> None:
    @bp.post("/task/submit")
    def submit_task() -> Response:
        with bodies.submission_slot():
            body = _body(frozenset({"task_parameters", "parent_tid"}))
            params = _parameters(body.get("task_parameters"), "task_parameters")
            parent = body.get("parent_tid")
            parent_id = None if parent is None else _parent(svc, parent)
            sub = cm.submission(params, parent_id)
            if sub.unique_name:
                _check_unique(svc, g.owner, sub.spec)
            task = submit(svc, sub.spec, owner=g.owner)
        number = cm.jedi_task_id(task.id)
        message = f"succeeded. new jediTaskID={number} (skypanda task {task.id})"
        return jsonify(cv.envelope(True, message, number))

    @bp.get("/task/get_status")
    def task_status() -> Response:
        task_id = cm.task_id_of(request.args.get("task_id", ""))
        task = svc.tasks.get_task(task_id, counts=False)
        return jsonify(cv.envelope(True, "", cv.task_status(task.status)))

    @bp.get("/task/get_job_ids")
    def task_job_ids() -> Response:
        task = svc.tasks.get_task(cm.task_id_of(request.args.get("task_id", "")), counts=False)
        if task.n_jobs > MAX_JOB_IDS:
            raise PandaInputError(f"task {task.id} has {task.n_jobs:,} jobs; get_job_ids lists "
                                  f"at most {MAX_JOB_IDS:,} (see GET /v1/tasks/{task.id}/jobs)",
                                  field="task_id")  # fmt: skip
        jobs = svc.jobs.list_jobs(task.id, limit=MAX_JOB_IDS)
        return jsonify(cv.envelope(True, "", [panda_id(j.id) for j in jobs]))


def _command_routes(bp: Blueprint, svc: Services) -> None:
    @bp.post("/task/kill")
    def kill_task() -> Response:
        task_id = cm.task_id_of(_body(_COMMAND_FIELDS["kill"]).get("task_id"))
        task = task_actions.kill(svc, task_id, g.owner, f"killed by {g.owner} (panda-client)",
                                 admin=g.admin)  # fmt: skip
        return _done("kill", task)

    @bp.post("/task/finish")
    def finish_task() -> Response:
        body = _body(_COMMAND_FIELDS["finish"])
        task_id = cm.task_id_of(body.get("task_id"))
        hard = not _flag(body, "soft")
        task = task_actions.finish(svc, task_id, g.owner, hard=hard, admin=g.admin)
        return _done("finish (hard)" if hard else "finish (soft)", task)

    @bp.post("/task/retry")
    def retry_task() -> Response:
        body = _body(_COMMAND_FIELDS["retry"])
        task_id = cm.task_id_of(body.get("task_id"))
        if body.get("new_parameters"):
            raise PandaInputError("retry with new_parameters is not supported by skypanda: "
                                  "submit a new task", field="new_parameters")  # fmt: skip
        for name in _COMMAND_FIELDS["retry"] - {"task_id", "new_parameters"}:
            _flag(body, name)  # accepted, and no counterpart here
        n = task_actions.retry(svc, task_id, g.owner, admin=g.admin)
        message = (f"retry has been triggered for {n} jobs of jediTaskID={cm.jedi_task_id(task_id)}"
                   f" (skypanda task {task_id})")  # fmt: skip
        return jsonify(cv.envelope(True, message, cv.CODE_OK))

    @bp.post("/job/kill")
    def kill_jobs() -> Response:
        """killJobs: `data` is one boolean per PandaID, as panda-server's: whether its kill
        is registered (killed now, or its pilot told to); false for a job that had ended,
        or that is not found or not the caller's."""
        job_ids = _job_ids(_body(frozenset({"job_ids"})).get("job_ids"), MAX_KILL_JOBS)
        done = {d.job_id: d for d in job_actions.kill_jobs(
            svc, job_ids, g.owner, admin=g.admin, reason=f"killed by {g.owner} (panda-client)"
        )}  # fmt: skip
        data = [done[j].result in _KILL_REGISTERED for j in job_ids]
        return jsonify(cv.envelope(True, f"{sum(data)} of {len(data)} jobs killed", data))


_KILL_REGISTERED = frozenset({*WRITTEN, KillResult.BEING_KILLED})
"""Results of a kill that panda-server answers `true` for (the kill is on its way)."""


def _read_routes(bp: Blueprint, svc: Services) -> None:
    @bp.post("/job/get_description")
    def job_descriptions() -> Response:
        return _describe(svc)

    @bp.post("/job/get_description_incl_archive")
    def job_descriptions_archive() -> Response:
        return _describe(svc)  # skypanda keeps every job: nothing is archived apart

    @bp.get("/task/get_tasks_detailed_info_since")
    def tasks_since() -> Response:
        wanted = cv.task_filter(request.args, g.owner)
        tasks = _find_tasks(svc, wanted)
        # Progress needs the jobs counted: for the newest COUNTED tasks (a done task's is
        # known without, and one without jobs has none)
        counted = [t for t in tasks if t.n_jobs and t.status is not TaskStatus.DONE][:COUNTED]
        counts = {t.id: svc.tasks.job_counts(t.id) for t in counted}
        infos = [cv.task_info(t, counts.get(t.id)) for t in tasks]
        return jsonify(cv.envelope(True, "", infos))


def _parent(svc: Services, value: object) -> str:
    """The skypanda id of the task `parent_tid` names.

    Raises:
        PandaInputError: not a jediTaskID, or no such task (naming parent_tid).
    """
    task_id = cm.task_id_of(value, "parent_tid")
    try:
        svc.tasks.get_task(task_id, counts=False)
    except NotFound as e:
        raise PandaInputError(f"parent_tid {value}: no such task", field="parent_tid") from e
    return task_id


def _code(e: SkypandaError) -> int:
    """PanDA's return code for a refusal (`data` of the envelope)."""
    if isinstance(e, _Duplicate):
        return cv.SUBMIT_DUPLICATE
    if isinstance(e, NotFound):
        return cv.CODE_NOT_FOUND
    if isinstance(e, Forbidden):
        return cv.CODE_DENIED
    if isinstance(e, Conflict):
        return cv.CODE_BAD_STATUS
    if isinstance(e, InvalidInput):
        field = e.context.get("field")
        return cv.CODE_BAD_TASK_ID if field == "task_id" else cv.SUBMIT_REFUSED
    return cv.CODE_SERVER_ERROR


def _done(command: str, task: Task) -> Response:
    message = (f"{command} command is registered for jediTaskID={cm.jedi_task_id(task.id)} "
               f"(skypanda task {task.id}, now {cv.task_status(task.status)})")  # fmt: skip
    return jsonify(cv.envelope(True, message, cv.CODE_OK))


def _body(known: frozenset[str]) -> dict[str, Any]:
    """The JSON object of a POST, with only `known` fields.

    Raises:
        InvalidInput: not a JSON object, over MAX_BODY_BYTES; PandaInputError: an unknown
            field (naming it).
    """
    data = bodies.json_body(MAX_BODY_BYTES)
    if not isinstance(data, dict):
        raise InvalidInput("the request body must be a JSON object")
    unknown = sorted(set(data) - known)
    if unknown:
        raise PandaInputError(f"unknown field {unknown[0]!r} (this call takes "
                              f"{', '.join(sorted(known))})", field=unknown[0])  # fmt: skip
    return data


def _parameters(value: Any, field: str) -> dict[str, Any]:
    """Task parameters: a JSON object, or a text holding one (as older clients send)."""
    if isinstance(value, str):
        value = bodies.parse_json(value, field)
    if not isinstance(value, dict):
        raise PandaInputError(f"{field} must be an object of task parameters", field=field)
    return value


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise PandaInputError(f"{name} must be true or false, not {str(value)[:40]!r}",
                              field=name)  # fmt: skip
    return value


def _check_unique(svc: Services, owner: str, spec: TaskSpec) -> None:
    """`uniqueTaskName`: refuse a name the owner already uses (unless that task ended
    failed, aborted, skipped or cancelled), as JEDI does.

    Raises:
        Conflict: naming the task that has the name.
    """
    query = TaskQuery(owner=owner, name_prefix=spec.name)
    cursor, seen = None, 0
    while seen < MAX_SCANNED:
        page = svc.store.task_page(query, cursor=cursor, limit=MAX_PAGE)
        for task in page.items:
            if task.spec.name == spec.name and task.status not in _NOT_UNIQUE:
                number = cm.jedi_task_id(task.id)
                raise _Duplicate(f"task name {spec.name} is already used by jediTaskID={number} "
                                 f"(skypanda task {task.id}, {cv.task_status(task.status)}); "
                                 "uniqueTaskName is set")  # fmt: skip
        seen += len(page.items)
        cursor = page.cursor
        if cursor is None:
            return


class _Duplicate(Conflict):
    """insertTaskParams' "duplication in JEDI" (code 2)."""


def _find_tasks(svc: Services, wanted: cv.TaskFilter) -> list[Task]:
    if wanted.any_req_id:
        return []  # skypanda tasks have no reqID
    if wanted.task_id is not None:
        try:
            task = svc.tasks.get_task(wanted.task_id, counts=False)
        except NotFound:
            return []
        return [task] if wanted.matches(task) else []
    query = TaskQuery(owner=wanted.owner, statuses=wanted.statuses,
                      name_prefix=wanted.name or "")  # fmt: skip
    found: list[Task] = []
    cursor, seen = None, 0
    while len(found) < wanted.n_tasks and seen < MAX_SCANNED:
        page = svc.store.task_page(query, cursor=cursor, limit=MAX_PAGE)
        found += [t for t in page.items if wanted.matches(t)]
        seen += len(page.items)
        cursor = page.cursor
        if cursor is None:
            break
    return found[: wanted.n_tasks]


def _describe(svc: Services) -> Response:
    job_ids = _job_ids(_body(frozenset({"job_ids"})).get("job_ids"), MAX_JOB_IDS)
    jobs = svc.jobs.get_jobs(job_ids)
    data = [cv.job_description(jobs[j]) if j in jobs else None for j in job_ids]
    return jsonify(cv.envelope(True, "", data))


def _job_ids(ids: object, limit: int) -> list[str]:
    """The skypanda job ids of `job_ids` (a list of PandaIDs, or one).

    Raises:
        PandaInputError: not a list of at most `limit` PandaIDs (naming job_ids).
    """
    if isinstance(ids, int | str) and not isinstance(ids, bool):
        ids = [ids]  # one PandaID, as older clients send it
    if not isinstance(ids, list) or len(ids) > limit:
        raise PandaInputError(f"job_ids must be a list of at most {limit} PandaIDs",
                              field="job_ids")  # fmt: skip
    return [_job_id(v) for v in ids]


def _job_id(value: object) -> str:
    if isinstance(value, bool) or not re.fullmatch(r"[0-9]{1,30}", str(value).strip()):
        raise PandaInputError(f"job_ids holds {str(value)[:40]!r}, not a PandaID", field="job_ids")
    try:
        return job_id_of(str(value))
    except PandaInputError as e:
        raise PandaInputError(f"job_ids: {e.message}", field="job_ids") from e
