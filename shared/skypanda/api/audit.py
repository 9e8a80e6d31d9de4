"""The audit trail over HTTP: each call of an acting route is written after it is answered
(`domain.audit`: who, what, when, from where, and what came of it), and admins read the trail
(`GET /v1/audit`).

"From where" is the client's address. Behind a load balancer or Google's front end the socket's
peer is the proxy: `trusted_proxies` (SKYPANDA_TRUSTED_PROXIES; 1 on Google Cloud) says how many
`X-Forwarded-For` hops to believe (werkzeug's ProxyFix); the default, 0, believes none, so a
client cannot name itself an address.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.middleware.proxy_fix import ProxyFix

from skypanda.api.params import int_arg
from skypanda.domain.audit import MAX_DETAIL, MAX_LIST, AuditEntry, audit_id, outcome_of
from skypanda.domain.errors import InvalidInput, clip
from skypanda.domain.models import jsonable
from skypanda.handlers.services import Services

log = logging.getLogger(__name__)

ACTIONS = frozenset(
    {
        "create_task", "create_workflow",
        "kill_task", "retry_task", "finish_task", "pause_task", "resume_task",
        "reassign_task", "set_priority",
        "kill_workflow", "retry_workflow",
        "kill_job", "kill_jobs",
        "apply_queues", "reset_backoff", "drain_pilot",
        "add_webhook", "remove_webhook", "webhook_secret",
        "create_watch", "remove_watch",
        # the same actions from the web monitor's pages (api.monitor.actions)
        "monitor.kill_task", "monitor.retry_task", "monitor.pause_task", "monitor.resume_task",
        "monitor.set_priority", "monitor.kill_workflow", "monitor.retry_workflow",
        "monitor.kill_job",
        # and from panda-client (api.panda.client): refusals are HTTP 200 there, as PanDA's
        "panda_client.submit_task", "panda_client.kill_task", "panda_client.finish_task",
        "panda_client.retry_task", "panda_client.kill_jobs",
    }
)  # fmt: skip
"""The routes whose calls are written to the trail (the acting ones of people and pipelines;
not reads, and not the pilots' dispatch protocol)."""
TARGETS = (
    ("task_id", "task"), ("workflow_id", "workflow"), ("pilot_id", "pilot"), ("name", "queue"),
    ("watch_name", "watch"), ("job_id", "job"),
)  # fmt: skip
SMALL_BODY = 4096  # an acting call's body is kept in the entry only when it is this small


def trusted_proxies_from_env(default: int) -> int:
    """SKYPANDA_TRUSTED_PROXIES, else `default`.

    Raises:
        InvalidInput: not a count from 0 to 5.
    """
    raw = os.environ.get("SKYPANDA_TRUSTED_PROXIES", str(default))
    if not raw.isdigit() or int(raw) > 5:
        raise InvalidInput(f"SKYPANDA_TRUSTED_PROXIES must be a count (0-5), not {raw!r}")
    return int(raw)


def install(app: Flask, svc: Services, *, trusted_proxies: int = 0) -> None:
    """Write an entry after every call of an acting route; serve `GET /v1/audit`."""
    if trusted_proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=trusted_proxies, x_proto=trusted_proxies
        )

    last = [None]  # type: list[str | None]  # this app's previous entry id, kept in order
    lock = threading.Lock()

    @app.after_request
    def _record(response: Response) -> Response:
        principal = g.get("principal")
        if request.endpoint in ACTIONS and principal is not None:
            try:
                now = svc.clock.now()
                with lock:
                    entry_id = audit_id(now, last[0])
                    last[0] = entry_id
                svc.audit.record_audit(_entry(entry_id, now, principal, response))
            except Exception:  # the answer stands; a lost entry is logged loudly
                log.exception("audit entry lost: %s %s by %s", request.method, request.path,
                              principal.name)  # fmt: skip
        return response

    @app.get("/v1/audit")
    def list_audit() -> Response:
        args = request.args
        since = args.get("since")
        entries = svc.audit.list_audit(
            target_id=args.get("target") or None,
            actor=args.get("actor") or None,
            since=None if since is None else float(int_arg("since", 0, 0, 10**11)),
            before=args.get("before") or None,
            limit=int_arg("limit", 100, 1, MAX_LIST),
        )
        return jsonify({"entries": [jsonable(e) for e in entries]})


def _entry(entry_id: str, now: float, principal: Any, response: Response) -> AuditEntry:
    kind, target = _target(response)
    return AuditEntry(
        id=entry_id,
        at=now,
        actor=principal.name,
        roles=sorted(principal.roles),
        action=str(request.endpoint),
        method=request.method,
        path=clip(request.path),
        target_kind=kind,
        target_id=clip(target),
        outcome=outcome_of(_status(response)),
        status=_status(response),
        detail=clip(_detail(response), MAX_DETAIL),
        remote=clip(request.remote_addr or ""),
        agent=clip(request.user_agent.string),
    )


def _status(response: Response) -> int:
    """The call's status: the HTTP one, or the one a route that answers its refusals with 200
    (PanDA's envelope, `api.panda.client`) says the refusal had (`g.refused_status`)."""
    refused: int | None = g.get("refused_status")
    return response.status_code if refused is None else refused


def _reply(response: Response) -> dict[str, Any]:
    if response.is_json and not response.direct_passthrough:
        body = response.get_json(silent=True)
        if isinstance(body, dict):
            return body
    return {}


def _target(response: Response) -> tuple[str, str]:
    args = request.view_args or {}
    for key, kind in TARGETS:
        if key in args:
            return kind, str(args[key])
    if request.endpoint in ("create_task", "create_workflow") and response.status_code < 400:
        return request.endpoint.removeprefix("create_"), str(_reply(response).get("id", ""))
    if request.endpoint == "create_watch" and response.status_code < 400:
        return "watch", str(_reply(response).get("name", ""))
    if request.endpoint == "apply_queues":
        return "queue", ",".join(_queue_names())
    return "", ""


def _queue_names() -> list[str]:
    body = _small_body()
    queues = body.get("queues") if isinstance(body, dict) else None
    if not isinstance(queues, list):
        return []
    return [str(q.get("name", "?")) for q in queues if isinstance(q, dict)]


def _small_body() -> Any:
    """The body as the route parsed it (`api.bodies`), if small."""
    if request.content_length is None or request.content_length > SMALL_BODY:
        return None
    return g.get("json_body")


def _detail(response: Response) -> str:
    """The refusal's message; for a done call, what was asked."""
    reply = _reply(response)
    if _status(response) >= 400:
        return str(reply.get("message", response.status))
    if request.endpoint in ("create_task", "create_workflow"):
        name = reply.get("name") or (reply.get("spec") or {}).get("name", "")
        return f"name {name}" if name else ""
    body = _small_body()
    return json.dumps(body, separators=(",", ":"), sort_keys=True) if body else ""
