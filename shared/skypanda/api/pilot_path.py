"""The pilots' hot routes (a report with the next acquire, an acquire, a heartbeat), answered
the same with or without Flask's per-request machinery.

Every job a pilot runs costs it one of these calls, and on a chain of short jobs the server's
CPU per call is what limits the jobs per second. Flask's request context, URL matching, hooks
and response object cost about as much as the report's own SQL (measured during a chain: the
app took 0.8 ms of a call beyond the report's handler, now 0.4 ms with the body's parsing and
validation), so `install` answers these three routes in a WSGI layer in front of Flask: the same
checks in the same order, by the same functions (`access.authorize`, `bodies.object_of`,
`bodies.validate`, `errors.error_json`), the same answers (`ANSWERS`, which Flask's routes
call too), the same JSON, the same log labels (`wire.logs`: the trace, the pilot, the caller).
Anything else (another method, a body over LEAN_MAX_BYTES or of unknown length, a mounted
app) goes to Flask, which answers these routes as well.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.http import HTTP_STATUS_CODES

from skypanda.api import access
from skypanda.api.bodies import object_of, validate
from skypanda.api.errors import error_json
from skypanda.domain.models import JobReport, jsonable
from skypanda.domain.values import MAX_CORES, Int
from skypanda.handlers import dispatch
from skypanda.handlers.dispatch import Reply
from skypanda.handlers.services import Services
from skypanda.ports import Identity
from skypanda.wire import logs

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

LEAN_MAX_BYTES = 1024 * 1024
"""Bodies up to this size are answered here; larger ones (a report with long logs) by Flask."""
_PATH = re.compile(r"/v1/pilots/([^/]+)/(update|acquire|heartbeat)")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AcquireBody(_Body):
    n: Int = Field(default=1, ge=1, le=1000)
    job_id: str | None = Field(default=None, max_length=200)  # push mode: exactly this job
    # A long-poll: wait up to this long for jobs when none is ready (capped by the server).
    wait_s: float = Field(default=0.0, ge=0, le=3600, allow_inf_nan=False)
    # Only jobs of at most this many cores (1 to the pilot's; omitted: the pilot's cores)
    max_cores: Int | None = Field(default=None, ge=1, le=MAX_CORES)


class ReportBody(JobReport):
    log: str | None = Field(default=None, max_length=1024 * 1024)  # a pilot sends <= 64 KB


class UpdateBody(_Body):
    reports: list[ReportBody] = Field(max_length=5000)
    acquire: Int = Field(default=0, ge=0, le=1000)  # jobs to take in the reply (0: none)
    max_cores: Int | None = Field(default=None, ge=1, le=MAX_CORES)  # of each job taken


class HeartbeatBody(_Body):
    jobs: list[str] | None = None  # the jobs the pilot holds, when it says


Answer = Callable[[Services, Identity, str, dict[str, Any]], dict[str, Any]]
"""A route's answer: (services, identity, the path's pilot id, the JSON body) -> JSON."""


def _reply(reply: Reply, **extra: Any) -> dict[str, Any]:
    return {**extra, "commands": reply.commands, "drain": reply.drain}


def credential(identity: Identity, pilot_id: str) -> dict[str, str]:
    """The pilot's own short-lived credential (on register, renewed on each heartbeat)."""
    token = identity.pilot_credential(pilot_id)
    return {} if token is None else {"token": token}


def acquire(svc: Services, identity: Identity, pilot_id: str, data: dict[str, Any]) -> Any:
    body = validate(AcquireBody, data)
    jobs = dispatch.acquire(
        svc, pilot_id, body.n, body.job_id, wait_s=body.wait_s, max_cores=body.max_cores
    )
    return {"jobs": [jsonable(j) for j in jobs]}


def update(svc: Services, identity: Identity, pilot_id: str, data: dict[str, Any]) -> Any:
    body = validate(UpdateBody, data)
    logs_ = {r.job_id: r.log for r in body.reports if r.log}
    reports: list[JobReport] = list(body.reports)  # validated once: a ReportBody is one
    results, reply = dispatch.update(
        svc, pilot_id, reports, logs_, acquire_n=body.acquire, max_cores=body.max_cores
    )
    if body.acquire:
        return _reply(reply, results=results, jobs=[jsonable(j) for j in reply.jobs])
    return _reply(reply, results=results)


def heartbeat(svc: Services, identity: Identity, pilot_id: str, data: dict[str, Any]) -> Any:
    reply = dispatch.heartbeat(svc, pilot_id, validate(HeartbeatBody, data).jobs)
    return _reply(reply, **credential(identity, pilot_id))


ANSWERS: dict[str, Answer] = {"update": update, "acquire": acquire, "heartbeat": heartbeat}
"""The lean routes by endpoint name (`access.ROUTE_ROLES`), each POST /v1/pilots/<id>/<name>."""


def install(app: Flask, svc: Services, identity: Identity) -> None:
    """Answer the ANSWERS routes in front of `app` (its `wsgi_app`, so a test client goes
    this way too)."""
    flask_wsgi = app.wsgi_app
    dumps = app.json.dumps

    def wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        found = _lean(environ)
        if found is None:
            return flask_wsgi(environ, start_response)
        pilot_id, endpoint, size = found
        tokens: list[contextvars.Token[Any]] = []
        try:
            body, status = _answer(environ, pilot_id, endpoint, size, tokens)
        finally:
            for token in reversed(tokens):
                token.var.reset(token)
        try:
            text = (dumps(body, separators=(",", ":")) + "\n").encode()
        except Exception as e:  # a value JSON cannot hold: as Flask's handler would answer
            body, status = error_json(e)
            text = (dumps(body, separators=(",", ":")) + "\n").encode()
        start_response(_status_line(status), [
            ("Content-Type", "application/json"), ("Content-Length", str(len(text))),
        ])  # fmt: skip
        return [text]

    def _answer(
        environ: WSGIEnvironment,
        pilot_id: str,
        endpoint: str,
        size: int,
        tokens: list[contextvars.Token[Any]],
    ) -> tuple[Any, int]:
        # Flask's order: the trace and the path's labels, the caller, then the body
        tokens.append(logs.set_trace(_trace_headers(environ)))
        tokens.append(logs.set_labels(**logs.labels_of({"pilot_id": pilot_id})))
        try:
            principal = access.authorize(
                identity, access.bearer(environ.get("HTTP_AUTHORIZATION", "")), endpoint,
                {"pilot_id": pilot_id}, method="POST", path=environ.get("PATH_INFO", ""),
                uploader=lambda: None,
            )  # fmt: skip
            if principal.name:
                tokens.append(logs.set_labels(owner=principal.name))
            data = object_of(environ["wsgi.input"].read(size))
            return ANSWERS[endpoint](svc, identity, pilot_id, data), 200
        except Exception as e:  # answered as Flask's error handlers answer (`api.errors`)
            return error_json(e)

    wsgi.__wrapped__ = flask_wsgi  # type: ignore[attr-defined]  # Flask alone (tests)
    app.wsgi_app = wsgi  # type: ignore[method-assign]


def _status_line(status: int) -> str:
    """As werkzeug writes it (`Response.status`)."""
    return f"{status} {HTTP_STATUS_CODES.get(status, 'Unknown Error').upper()}"


def _lean(environ: WSGIEnvironment) -> tuple[str, str, int] | None:
    """(pilot id, endpoint, body size) of a request this layer answers; None for Flask."""
    if environ.get("REQUEST_METHOD") != "POST" or environ.get("SCRIPT_NAME"):
        return None
    match = _PATH.fullmatch(environ.get("PATH_INFO", ""))
    length = environ.get("CONTENT_LENGTH") or ""
    if match is None or not length.isdigit() or int(length) > LEAN_MAX_BYTES:
        return None
    if environ.get("HTTP_TRANSFER_ENCODING"):
        return None
    return match.group(1), match.group(2), int(length)


def _trace_headers(environ: WSGIEnvironment) -> dict[str, str]:
    """The trace headers (`logs.TRACE_HEADERS`) that came, by name."""
    found: dict[str, str] = {}
    for name in logs.TRACE_HEADERS:
        value = environ.get("HTTP_" + name.upper().replace("-", "_"))
        if value:
            found[name] = value
    return found
