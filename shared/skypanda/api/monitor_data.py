"""The monitor's data as JSON (for the CLI, scripts and the web monitor): lists paged by index
with a `next` cursor, a task's aggregates, time windows and the fleet, all read through the
Views port (ports.views), so each answer costs a bounded read whatever the campaign's size.

Lists (`GET /v1/tasks`, `/v1/workflows`, `/v1/tasks/<id>/jobs`, `/v1/pilots`) keep their
earlier keys (`tasks`, `workflows`, `jobs`, `pilots`) and add `next`: the cursor of the next
page, or null on the last. Query parameters are checked here; a bad one is a 422 that names it
(`status` and `owner` and the others below).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

from flask import Flask, Response, jsonify, request

from skypanda.api.params import int_arg, parse_moment, parse_states
from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import jsonable
from skypanda.domain.states import JobStatus, PilotStatus, TaskStatus, WorkflowStatus
from skypanda.handlers.services import Services
from skypanda.ports.views import (
    MAX_CURSOR_CHARS,
    MAX_PAGE,
    WINDOW_S,
    Bucket,
    JobQuery,
    TaskQuery,
    WorkflowQuery,
)

E = TypeVar("E", bound=StrEnum)
MAX_TEXT = 200  # owner, name prefix, queue: longer is not a name
DEFAULT_WINDOW_S = 3600.0


# -- query parameters ------------------------------------------------------------------------------


def text_arg(name: str) -> str | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if not raw or len(raw) > MAX_TEXT:
        raise InvalidInput(f"query parameter {name} must be 1 to {MAX_TEXT} characters")
    return raw


def states_arg(name: str, kind: type[E]) -> frozenset[E]:
    """Every `name=` given (repeatable, or comma-separated), each one of `kind`'s values."""
    return parse_states(request.args.getlist(name), kind, f"query parameter {name}")


def time_arg(name: str) -> float | None:
    """A moment: seconds since the epoch, or an ISO 8601 date-time (UTC unless it says)."""
    raw = request.args.get(name)
    return None if raw is None else parse_moment(raw, f"query parameter {name}")


def cursor_arg() -> str | None:
    raw = request.args.get("cursor")
    if raw is not None and not 0 < len(raw) <= MAX_CURSOR_CHARS:
        raise InvalidInput("query parameter cursor is empty or too long")
    return raw or None


def limit_arg(default: int, high: int = 1000) -> int:
    """The page size asked (at most `high`); a page holds at most MAX_PAGE whatever is asked,
    and says so with its `next` cursor."""
    return min(int_arg("limit", default, 1, high), MAX_PAGE)


def window_arg(svc: Services) -> float:
    """`since` for a time window: default the last hour, at most a day back."""
    now = svc.clock.now()
    since = time_arg("since")
    if since is None:
        return now - DEFAULT_WINDOW_S
    if since < now - WINDOW_S - 1:
        raise InvalidInput(f"query parameter since may reach back at most {WINDOW_S:.0f} s (a day)")
    return since


def _window(since: float | None, until: float | None) -> None:
    if since is not None and until is not None and until <= since:
        raise InvalidInput("query parameter until must be after since")


# -- the lists (called by the routes of api.app and api.workflows) ---------------------------------


def task_list(svc: Services) -> Response:
    query = TaskQuery(
        owner=text_arg("owner"),
        statuses=states_arg("status", TaskStatus),
        name_prefix=text_arg("name") or "",
        since=time_arg("since"),
        until=time_arg("until"),
        workflow_id=text_arg("workflow"),
    )
    _window(query.since, query.until)
    page = svc.store.task_page(query, cursor=cursor_arg(), limit=limit_arg(50))
    return jsonify({"tasks": [jsonable(t) for t in page.items], "next": page.cursor})


def workflow_list(svc: Services) -> Response:
    query = WorkflowQuery(
        owner=text_arg("owner"),
        statuses=states_arg("status", WorkflowStatus),
        name_prefix=text_arg("name") or "",
        since=time_arg("since"),
        until=time_arg("until"),
    )
    _window(query.since, query.until)
    page = svc.store.workflow_page(query, cursor=cursor_arg(), limit=limit_arg(50))
    return jsonify({"workflows": [jsonable(w) for w in page.items], "next": page.cursor})


def job_list(svc: Services, task_id: str) -> Response:
    svc.tasks.get_task(task_id, counts=False)  # 404 for an unknown task
    code = request.args.get("error_code")
    if code is not None and not (code.isdigit() and len(code) <= 9):
        raise InvalidInput(f"query parameter error_code must be a number, not {code[:20]!r}")
    query = JobQuery(
        statuses=states_arg("status", JobStatus),
        error_code=None if code is None else int(code),
    )
    limit = limit_arg(MAX_PAGE, high=100_000)  # earlier callers ask up to 100,000
    page = svc.store.job_page(task_id, query, cursor=cursor_arg(), limit=limit)
    return jsonify({"jobs": [jsonable(j) for j in page.items], "next": page.cursor})


def pilot_list(svc: Services) -> Response:
    page = svc.store.pilot_page(
        queue=text_arg("queue"),
        statuses=sorted(states_arg("status", PilotStatus)),
        cursor=cursor_arg(),
        limit=limit_arg(100),
    )
    return jsonify({"pilots": [jsonable(p) for p in page.items], "next": page.cursor})


# -- aggregates ------------------------------------------------------------------------------------


def _buckets(buckets: list[Bucket]) -> list[dict[str, Any]]:
    return [{"start": b.start, "count": b.count, "label": b.label} for b in buckets]


def routes(app: Flask, svc: Services) -> None:
    """A task's aggregates, the time windows and the queues' state (all readers' routes)."""

    def task_route(path: str, endpoint: str, build: Callable[[str], dict[str, Any]]) -> None:
        def view(task_id: str) -> Response:
            svc.tasks.get_task(task_id, counts=False)  # 404 for an unknown task
            return jsonify({"task_id": task_id, **build(task_id)})

        app.add_url_rule(f"/v1/tasks/<task_id>/{path}", endpoint, view, methods=["GET"])

    task_route(
        "errors",
        "task_errors",
        lambda t: {
            "errors": [
                {"error_code": e.error_code, "count": e.count, "diag": e.diag,
                 "example_job": e.example_job}
                for e in svc.store.error_summary(t, limit=int_arg("limit", 50, 1, 500))
            ]
        },
    )  # fmt: skip
    task_route(
        "timeline",
        "task_timeline",
        lambda t: {"points": svc.store.state_timeline(t, points=int_arg("points", 60, 2, 500))},
    )
    task_route(
        "durations",
        "task_durations",
        lambda t: {"buckets": _buckets(svc.store.duration_histogram(t))},
    )
    task_route(
        "memory",
        "task_memory",
        lambda t: {
            "points": [
                {"job_id": m.job_id, "requested_mb": m.requested_mb, "used_mb": m.used_mb}
                for m in svc.store.memory_use(t, limit=int_arg("limit", 1000, 1, 10_000))
            ]
        },
    )

    @app.get("/v1/stats/throughput")
    def stats_throughput() -> Response:
        since = window_arg(svc)
        buckets = svc.store.ended_per_minute(
            since=since, task_id=text_arg("task"), owner=text_arg("owner")
        )
        return jsonify({"since": since, "per_minute": _buckets(buckets)})

    @app.get("/v1/stats/failures")
    def stats_failures() -> Response:
        since = window_arg(svc)
        buckets = svc.store.failures_by_code(
            since=since, owner=text_arg("owner"), limit=int_arg("limit", 20, 1, 500)
        )
        return jsonify(
            {
                "since": since,
                "by_code": [{"error_code": b.label, "count": b.count} for b in buckets],
            }
        )

    @app.get("/v1/queues/status")
    def queues_status() -> Response:
        return jsonify(
            {
                "queues": [
                    {
                        "queue": v.queue,
                        "activated": v.activated,
                        "pilots": {str(k): n for k, n in v.pilots.items()},
                        "scaler_note": v.scaler_note,
                        "scaler_note_at": v.scaler_note_at,
                    }
                    for v in svc.store.queue_views()
                ]
            }
        )
