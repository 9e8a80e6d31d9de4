"""The owner's actions from the monitor's pages: the same handlers as the API's routes (which
check ownership: someone else's task is refused with 403, an admin may act on any), posted by a
form with the session's CSRF token, then back to the page with what happened.

What happened travels back as `?done=<action>&n=<jobs>` and the page words it from its own
table (`NOTES`): a link cannot make the page say anything else."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from flask import Blueprint, g, redirect, request, url_for
from werkzeug.wrappers import Response as WResponse

from skypanda.domain.errors import InvalidInput
from skypanda.domain.values import MAX_PRIORITY
from skypanda.handlers import job_actions, task_actions, workflow_actions
from skypanda.handlers.services import Services

Act = Callable[[Services, str], int]
"""An action on one object: does it, returns how many jobs it changed."""

NOTES = {
    "kill": "Killed: queued jobs are cancelled, running ones are being stopped.",
    "retry": "Retried: {jobs} run again.",
    "pause": "Paused: no new job starts until it is resumed.",
    "resume": "Resumed.",
    "priority": "Priority changed ({jobs} queued).",
    # a job's kill, by what it did (`domain.job_kill.KillResult`)
    "job_killed": "Killed: the job was queued, and is cancelled.",
    "job_kill_requested": "Kill requested: its pilot stops it within a heartbeat, then it ends "
    "cancelled (not retried).",
    "job_being_killed": "Its kill was requested already: its pilot is stopping it.",
    "job_ended": "It had ended already: nothing was done.",
}


def _kill(svc: Services, task_id: str) -> int:
    task_actions.kill(svc, task_id, g.owner, f"killed by {g.owner}", admin=g.admin)
    return 0


def _retry(svc: Services, task_id: str) -> int:
    return task_actions.retry(svc, task_id, g.owner, admin=g.admin)


def _pause(svc: Services, task_id: str) -> int:
    task_actions.pause(svc, task_id, g.owner, admin=g.admin)
    return 0


def _resume(svc: Services, task_id: str) -> int:
    task_actions.resume(svc, task_id, g.owner, admin=g.admin)
    return 0


def _priority(svc: Services, task_id: str) -> int:
    raw = request.form.get("priority", "").strip()
    try:
        priority = int(raw)
    except ValueError as e:
        raise InvalidInput(f"priority must be a whole number, not {raw!r}") from e
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidInput(f"priority must be between {-MAX_PRIORITY} and {MAX_PRIORITY}")
    return task_actions.set_priority(svc, task_id, g.owner, priority, admin=g.admin) or 0


def _kill_workflow(svc: Services, workflow_id: str) -> int:
    workflow_actions.kill(svc, workflow_id, f"killed by {g.owner}", g.owner, admin=g.admin)
    return 0


def _retry_workflow(svc: Services, workflow_id: str) -> int:
    return workflow_actions.retry(svc, workflow_id, g.owner, admin=g.admin)


TASK_ACTIONS: dict[str, tuple[str, Act]] = {
    "kill": ("kill_task", _kill),
    "retry": ("retry_task", _retry),
    "pause": ("pause_task", _pause),
    "resume": ("resume_task", _resume),
    "priority": ("set_priority", _priority),
}
WORKFLOW_ACTIONS: dict[str, tuple[str, Act]] = {
    "kill": ("kill_workflow", _kill_workflow),
    "retry": ("retry_workflow", _retry_workflow),
}


def _back(page: str, key: str, ident: str, verb: str, n: int) -> WResponse:
    query = urlencode({"done": verb, "n": n})
    return redirect(url_for(page, _external=False, **{key: ident}) + "?" + query, code=303)


def routes(bp: Blueprint, svc: Services) -> None:
    for verb, (endpoint, act) in TASK_ACTIONS.items():
        bp.add_url_rule(
            f"/tasks/<task_id>/{verb}", endpoint, _view(svc, act, verb, "monitor.task"),
            methods=["POST"],
        )  # fmt: skip
    for verb, (endpoint, act) in WORKFLOW_ACTIONS.items():
        bp.add_url_rule(
            f"/workflows/<workflow_id>/{verb}", endpoint, _view(svc, act, verb, "monitor.workflow"),
            methods=["POST"],
        )  # fmt: skip

    @bp.post("/jobs/<job_id>/kill")
    def kill_job(job_id: str) -> WResponse:
        """One job, not its task (`handlers.job_actions`: its task's owner or an admin)."""
        done = job_actions.kill_job(svc, job_id, g.owner, admin=g.admin)
        query = urlencode({"done": f"job_{done.result}"})
        return redirect(url_for("monitor.job", job_id=job_id) + "?" + query, code=303)


def _view(svc: Services, act: Act, verb: str, page: str) -> Callable[..., WResponse]:
    def view(**ids: str) -> WResponse:
        ((key, ident),) = ids.items()
        return _back(page, key, ident, verb, act(svc, ident))

    return view
