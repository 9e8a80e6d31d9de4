"""Who may call which route: one table, checked before every request (and walked whole by
`tests/functions/test_route_access.py`).

Users read everything (PanDA-style: all tasks are readable) and act on their own tasks and
workflows (the handlers check ownership; an admin acts on any). Pilots speak the dispatch
protocol; a launcher may only register pilots. The monitor role reads what users read, and
the metrics, and acts on nothing. Admins may do everything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from flask import g, request

from skypanda.domain.errors import Forbidden, Unauthorized
from skypanda.domain.identity import Principal, Role
from skypanda.ports import Identity

U, A, P, L, M = Role.USER, Role.ADMIN, Role.PILOT, Role.LAUNCHER, Role.MONITOR
ANYONE = frozenset({U, A, P, L, M})
READERS = frozenset({U, A, M})  # the monitor role reads and never acts
USERS = frozenset({U, A})
PILOTS = frozenset({P, A})

ROUTE_ROLES: Mapping[str, frozenset[Role]] = MappingProxyType(
    {
        # anyone authenticated
        "health": ANYONE,
        "whoami": ANYONE,
        "pilot_zipapp": ANYONE,
        # reading
        "list_tasks": READERS,
        "get_task": READERS,
        "list_jobs": READERS,
        "get_job": READERS,
        "get_log": READERS,
        "list_workflows": READERS,
        "get_workflow": READERS,
        "get_dag": READERS,
        "list_queues": READERS,
        "list_pilots": READERS,
        # the monitor's data as JSON (api.monitor_data)
        "task_errors": READERS,
        "task_timeline": READERS,
        "task_durations": READERS,
        "task_memory": READERS,
        "stats_throughput": READERS,
        "stats_failures": READERS,
        "queues_status": READERS,
        # users' own work (ownership checked by the handlers; admins act on any)
        "create_task": USERS,
        "create_workflow": USERS,
        "kill_task": USERS,
        "retry_task": USERS,
        "finish_task": USERS,
        "pause_task": USERS,
        "resume_task": USERS,
        "reassign_task": USERS,
        "set_priority": USERS,
        "kill_workflow": USERS,
        "retry_workflow": USERS,
        "kill_job": USERS,
        "kill_jobs": USERS,
        # webhooks: a user manages their own, an admin anyone's (handlers.webhooks checks)
        "list_webhooks": USERS,
        "add_webhook": USERS,
        "remove_webhook": USERS,
        "webhook_secret": USERS,
        "list_deliveries": USERS,
        "create_watch": USERS,
        "list_watches": USERS,
        "remove_watch": USERS,
        # operators
        "apply_queues": frozenset({A}),
        "reset_backoff": frozenset({A}),
        "drain_pilot": frozenset({A}),
        "list_audit": frozenset({A}),
        # Prometheus metrics: admins and the monitor role (a scraper's credential)
        "metrics": frozenset({A, M}),
        # the dispatch protocol
        "register": frozenset({P, L, A}),
        "acquire": PILOTS,
        "update": PILOTS,
        "heartbeat": PILOTS,
        "end": PILOTS,
        "append_log": PILOTS,
        "put_output": PILOTS,
        # the PanDA pilot's protocol (api.panda); its queue descriptions read like queues
        "panda.get_job": PILOTS,
        "panda.update_job": PILOTS,
        "panda.schedconfig": PILOTS | READERS,
        "panda.ddm_endpoints": PILOTS | READERS,
        # the newer PanDA pilot API (api.panda.pilot_v1, /api/v1/pilot/...)
        "panda.pilot_v1.acquire_jobs": PILOTS,
        "panda.pilot_v1.update_job": PILOTS,
        "panda.pilot_v1.update_jobs_bulk": PILOTS,
        # panda-client's routes (api.panda.client): reading as users read, task commands on
        # one's own tasks (ownership checked by the handlers, as above)
        "panda_client.is_alive": READERS,
        "panda_client.submit_task": USERS,
        "panda_client.task_status": READERS,
        "panda_client.task_job_ids": READERS,
        "panda_client.kill_task": USERS,
        "panda_client.kill_jobs": USERS,
        "panda_client.finish_task": USERS,
        "panda_client.retry_task": USERS,
        "panda_client.job_descriptions": READERS,
        "panda_client.job_descriptions_archive": READERS,
        "panda_client.tasks_since": READERS,
        "panda_client.validate_cache_file": USERS,
        "panda_client.upload_cache_file": USERS,
        # the monitor's pages (api.monitor): a session cookie or a bearer token
        "monitor.login": READERS,
        "monitor.logout": READERS,
        "monitor.login_link": READERS,
        "monitor.static": READERS,
        "monitor.home": READERS,
        "monitor.tasks": READERS,
        "monitor.task": READERS,
        "monitor.job": READERS,
        "monitor.job_log": READERS,
        "monitor.workflows": READERS,
        "monitor.workflow": READERS,
        "monitor.queues": READERS,
        "monitor.plots": READERS,
        "monitor.live_tasks": READERS,
        "monitor.live_job": READERS,
        "monitor.live_chart": READERS,
        # the monitor's task actions (ownership checked by the handlers, as above)
        "monitor.kill_task": USERS,
        "monitor.retry_task": USERS,
        "monitor.pause_task": USERS,
        "monitor.resume_task": USERS,
        "monitor.set_priority": USERS,
        "monitor.kill_workflow": USERS,
        "monitor.retry_workflow": USERS,
        "monitor.kill_job": USERS,
    }
)


LAUNCH_ROUTES = frozenset({"register", "pilot_zipapp"})
"""What a launch credential may call."""


def authenticate(identity: Identity, fallback: Callable[[], str | None] | None = None) -> Principal:
    """The caller, from `Authorization: Bearer`, allowed on this route (stored in `g`).
    Without that header, `fallback` may find the token elsewhere (the monitor's session
    cookie on /ui routes: `api.monitor.auth`); the same identity verifies it.

    Raises:
        Unauthorized: no credential, or one the identity refuses.
        Forbidden: the caller's roles are not among the route's.
    """
    token = bearer(request.headers.get("Authorization", ""))
    if not token and fallback is not None:
        token = fallback() or ""
    principal = authorize(
        identity, token, request.endpoint, request.view_args or {},
        method=request.method, path=request.path, uploader=lambda: request.args.get("pilot"),
    )  # fmt: skip
    g.principal = principal
    g.owner = principal.name
    g.admin = principal.admin
    return principal


def bearer(header: str) -> str:
    """The token of an `Authorization: Bearer <token>` header ("" for any other)."""
    scheme, _, given = header.partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def authorize(
    identity: Identity,
    token: str,
    endpoint: str | None,
    view_args: Mapping[str, object],
    *,
    method: str,
    path: str,
    uploader: Callable[[], str | None],
) -> Principal:
    """`authenticate` without Flask (the pilots' lean routes, `api.pilot_path`, call it too):
    who `token` is, allowed to call `endpoint` with `view_args` (the path's arguments).
    `uploader`: the `pilot` query argument (read only for an upload).

    Raises:
        Unauthorized: no credential, or one the identity refuses.
        Forbidden: the caller's roles are not among the route's.
    """
    if not token:
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    principal = identity.authenticate(token)
    # No such route: an authenticated caller gets the 404. A route missing from the table is
    # nobody's (a test checks that none is missing).
    allowed = ANYONE if endpoint is None else ROUTE_ROLES.get(endpoint, frozenset())
    if not principal.has_any(allowed):
        roles = ", ".join(sorted(principal.roles))
        raise Forbidden(f"{principal.name} ({roles}) may not call {method} {path}")
    if principal.pilot is not None:
        _within_scope(principal.pilot, endpoint, view_args, uploader)
    launch_for = principal.launch_for
    if launch_for is not None and endpoint not in LAUNCH_ROUTES:
        # A launch credential registers its one pilot, once (handlers.dispatch.register); it
        # may fetch the pilot first (a pilot starter: any image with python3).
        raise Forbidden(
            f"a launch credential for pilot {launch_for} may only download the pilot and "
            "register it"
        )
    return principal


def _within_scope(
    pilot: str,
    endpoint: str | None,
    args: Mapping[str, object],
    uploader: Callable[[], str | None],
) -> None:
    """A credential scoped to one pilot acts for that pilot alone: its own pilot routes, and
    uploads as itself (the job routes check that it holds the job).

    Raises:
        Forbidden: naming the pilot it may act for.
    """
    if endpoint == "register":
        raise Forbidden(f"pilot {pilot}'s credential cannot register pilots")
    if "pilot_id" in args and args["pilot_id"] != pilot:
        raise Forbidden(f"pilot {pilot}'s credential cannot act for pilot {args['pilot_id']}")
    if endpoint == "put_output" and uploader() != pilot:
        raise Forbidden(f"pilot {pilot}'s credential can upload only as pilot {pilot}")
