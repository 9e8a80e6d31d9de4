"""Ends of tasks and workflows write their `task.ended` / `workflow.ended` events in the same
commit as the status change, one event per end (an end after a retry is a new event)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from skypanda.domain.events import EventType
from skypanda.domain.models import TaskSpec
from skypanda.domain.states import TaskStatus, WorkflowStatus
from skypanda.handlers import task_actions, workflow, workflow_actions
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from tests.handlers.test_workflows import Run, _spec
from tests.support import FakeClock


def _ends(tmp_path: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(type, id, data) of every end event in the outbox, delivered or not, in order."""
    db = sqlite3.connect(tmp_path / "db.sqlite")
    try:
        rows = db.execute(
            "SELECT type, id, data FROM outbox WHERE type IN (?, ?) ORDER BY seq",
            (str(EventType.TASK_ENDED), str(EventType.WORKFLOW_ENDED)),
        ).fetchall()
    finally:
        db.close()
    return [(t, i, json.loads(d)) for t, i, d in rows]


def test_a_workflow_and_its_tasks_ending_write_one_end_event_each(
    svc: Services, tmp_path: Path
) -> None:
    # Given a workflow a -> b whose jobs all succeed
    run = Run(svc, _spec([{"name": "a", "n_jobs": 2}, {"name": "b", "n_jobs": 1, "after": ["a"]}]))

    # When it runs to its end
    assert run.go() is WorkflowStatus.DONE

    # Then each task and the workflow wrote one end event, with who owns it and why
    ends = _ends(tmp_path)
    tasks = [d for t, _, d in ends if t == EventType.TASK_ENDED]
    assert sorted((d["name"], d["status"]) for d in tasks) == [("a", "done"), ("b", "done")]
    assert all(d["owner"] == "me" and d["workflow_id"] == run.wf.id for d in tasks)
    (wf,) = [d for t, _, d in ends if t == EventType.WORKFLOW_ENDED]
    assert (wf["workflow_id"], wf["status"], wf["owner"]) == (run.wf.id, "done", "me")


def test_a_retried_workflow_that_fails_again_makes_new_end_events(
    svc: Services, tmp_path: Path, clock: FakeClock
) -> None:
    # Given a workflow whose only job always fails, ended failed
    run = Run(svc, _spec([{"name": "a", "n_jobs": 1}]), fail=lambda name, i: True)
    assert run.go() is WorkflowStatus.FAILED

    # When it is retried later and fails again
    clock.advance(60)
    workflow_actions.retry(svc, run.wf.id)
    assert run.go() is WorkflowStatus.FAILED

    # Then both ends of the task and of the workflow are events (distinct ids, in order)
    ends = _ends(tmp_path)
    assert [(t, d["status"]) for t, _, d in ends] == [
        (EventType.TASK_ENDED, "failed"),
        (EventType.WORKFLOW_ENDED, "failed"),
        (EventType.TASK_ENDED, "failed"),
        (EventType.WORKFLOW_ENDED, "failed"),
    ]
    assert len({i for _, i, _ in ends}) == 4


def test_killing_a_task_writes_its_aborted_end(svc: Services, tmp_path: Path) -> None:
    # Given a plain task, split
    task = submit(svc, TaskSpec(name="t", command=["true"], n_jobs=3), "me")

    # When its owner kills it
    task_actions.kill(svc, task.id, "me", "not needed")

    # Then its end is an event with the reason
    [(kind, _, data)] = _ends(tmp_path)
    assert kind == EventType.TASK_ENDED
    assert (data["task_id"], data["status"], data["reason"]) == (task.id, "aborted", "not needed")


def test_killing_a_workflow_writes_its_end_and_its_tasks_ends(
    svc: Services, tmp_path: Path
) -> None:
    run = Run(svc, _spec([{"name": "a", "n_jobs": 2}, {"name": "b", "n_jobs": 1, "after": ["a"]}]))
    workflow.start(svc, run.wf.id)

    workflow_actions.kill(svc, run.wf.id, "stop")

    statuses = sorted((t, d["status"]) for t, _, d in _ends(tmp_path))
    assert statuses == [
        (EventType.TASK_ENDED, TaskStatus.ABORTED),
        (EventType.TASK_ENDED, TaskStatus.ABORTED),
        (EventType.WORKFLOW_ENDED, WorkflowStatus.ABORTED),
    ]
