"""Chaining (`start_after`): a submission held until another task or workflow ends, then started
(its registered event, once) or ended `skipped` with a reason naming the trigger. The chain
handler is fed the end payloads directly, as the router delivers them."""

from __future__ import annotations

from typing import Any

import pytest

from skypanda.domain.errors import InvalidInput
from skypanda.domain.events import EventType, TaskEnded, WorkflowEnded
from skypanda.domain.models import Task, TaskSpec
from skypanda.domain.states import TaskStatus, WorkflowStatus
from skypanda.domain.workflow import WorkflowSpec
from skypanda.handlers import chain, queues, task_actions, workflow, workflow_actions
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit

_PATH = {  # how a trigger task is walked to each end status in tests
    TaskStatus.DONE: [TaskStatus.READY, TaskStatus.RUNNING, TaskStatus.DONE],
    TaskStatus.FAILED: [TaskStatus.FAILED],
    TaskStatus.ABORTED: [TaskStatus.ABORTED],
}


def _task(name: str, **after: Any) -> TaskSpec:
    data: dict[str, Any] = {"name": name, "command": ["true"], "n_jobs": 1}
    if after:
        data["start_after"] = after
    return TaskSpec.model_validate(data)


def _workflow(name: str, **after: Any) -> WorkflowSpec:
    data: dict[str, Any] = {
        "name": name,
        "tasks": [{"name": "a", "command": ["true"], "n_jobs": 1},
                  {"name": "b", "command": ["true"], "n_jobs": 1, "after": ["a"]}],
    }  # fmt: skip
    if after:
        data["start_after"] = after
    return WorkflowSpec.model_validate(data)


def _end_task(svc: Services, task: Task, status: TaskStatus) -> TaskEnded:
    """Walk the trigger task to `status`; the end payload its end event carries."""
    current = task.status
    for step in _PATH[status]:
        assert svc.tasks.set_task_status(task.id, [current], step)
        current = step
    return TaskEnded(task_id=task.id, status=str(status), owner=task.owner, name=task.spec.name)


def _events(svc: Services, type_: EventType) -> list[Any]:
    return [s.event for s in svc.outbox.pending_events(1000) if s.event.type is type_]


def _status(svc: Services, task_id: str) -> Task:
    return svc.tasks.get_task(task_id, counts=False)


def test_a_chained_task_is_held_then_starts_once_when_its_trigger_ends_done(
    svc: Services,
) -> None:
    # Given a trigger task and a task chained on it
    trigger = submit(svc, _task("first"), "alice")
    held = submit(svc, _task("second", task=trigger.id), "bob")

    # Then the chained one is stored held: pending, saying what it waits for, no event
    assert held.status is TaskStatus.PENDING
    assert held.reason == f"waiting for task {trigger.id} to end done"
    assert [e.subject for e in _events(svc, EventType.TASK_REGISTERED)] == [f"tasks/{trigger.id}"]

    # When the trigger ends done and its end is delivered twice
    payload = _end_task(svc, trigger, TaskStatus.DONE)
    chain.handle(svc, payload)
    chain.handle(svc, payload)

    # Then the chained task is registered, with one registered event
    assert _status(svc, held.id).status is TaskStatus.REGISTERED
    registered = [e.id for e in _events(svc, EventType.TASK_REGISTERED)]
    assert registered.count(f"task-registered:{held.id}") == 1


def test_a_chained_task_whose_trigger_fails_is_skipped_with_the_reason(svc: Services) -> None:
    # Given a task chained on another ending done
    trigger = submit(svc, _task("first"), "alice")
    held = submit(svc, _task("second", task=trigger.id), "bob")

    # When the trigger fails
    chain.handle(svc, _end_task(svc, trigger, TaskStatus.FAILED))

    # Then the chained task never starts: skipped, naming the trigger and its status
    after = _status(svc, held.id)
    assert after.status is TaskStatus.SKIPPED
    assert after.reason == (
        f"not started: task {trigger.id} ended failed (start_after wanted done)"
    )
    assert not [e for e in _events(svc, EventType.TASK_REGISTERED) if held.id in e.id]
    # and its own end is an event (a chain on it decides in turn)
    ends = [e.data for e in _events(svc, EventType.TASK_ENDED) if e.data["task_id"] == held.id]
    assert [d["status"] for d in ends] == ["skipped"]


def test_a_list_of_statuses_starts_on_any_of_them(svc: Services) -> None:
    trigger = submit(svc, _task("first"), "alice")
    held = submit(svc, _task("cleanup", task=trigger.id, status=["done", "failed"]), "bob")

    chain.handle(svc, _end_task(svc, trigger, TaskStatus.FAILED))

    assert _status(svc, held.id).status is TaskStatus.REGISTERED


def test_a_trigger_ended_already_decides_at_submission(svc: Services) -> None:
    # Given a trigger that has failed already
    trigger = submit(svc, _task("first"), "alice")
    _end_task(svc, trigger, TaskStatus.FAILED)

    # When tasks are chained on it, wanting done and wanting failed
    skipped = submit(svc, _task("on-done", task=trigger.id), "bob")
    started = submit(svc, _task("on-failed", task=trigger.id, status="failed"), "bob")

    # Then each is decided at once, and the reply says so
    assert skipped.status is TaskStatus.SKIPPED
    assert started.status is TaskStatus.REGISTERED


def test_an_unknown_trigger_is_refused_and_nothing_is_stored(svc: Services) -> None:
    with pytest.raises(InvalidInput, match="start_after: no task with id 'tnope'"):
        submit(svc, _task("second", task="tnope"), "bob")
    with pytest.raises(InvalidInput, match="start_after: no workflow"):
        workflow.submit_workflow(svc, _workflow("w", workflow="wnope"), "bob")
    assert svc.tasks.list_tasks() == []
    assert svc.workflows.list_workflows() == []


def test_a_killed_held_task_never_starts(svc: Services) -> None:
    trigger = submit(svc, _task("first"), "alice")
    held = submit(svc, _task("second", task=trigger.id), "bob")

    task_actions.kill(svc, held.id, "bob", "changed my mind")
    chain.handle(svc, _end_task(svc, trigger, TaskStatus.DONE))

    assert _status(svc, held.id).status is TaskStatus.ABORTED
    assert not [e for e in _events(svc, EventType.TASK_REGISTERED) if held.id in e.id]


def test_a_stale_end_is_ignored(svc: Services) -> None:
    # Given a trigger that failed and was retried (running again)
    trigger = submit(svc, _task("first"), "alice")
    held = submit(svc, _task("second", task=trigger.id), "bob")
    stale = _end_task(svc, trigger, TaskStatus.FAILED)
    assert svc.tasks.set_task_status(trigger.id, [TaskStatus.FAILED], TaskStatus.RUNNING)

    # When its old failed end is delivered late
    chain.handle(svc, stale)

    # Then the chained task still waits (the next end decides it)
    assert _status(svc, held.id).status is TaskStatus.PENDING


def test_rebrokering_leaves_held_tasks_alone(svc: Services) -> None:
    trigger = submit(svc, _task("first"), "alice")
    held = submit(svc, _task("second", task=trigger.id), "bob")

    assert queues.rebroker(svc) == []
    assert _status(svc, held.id).status is TaskStatus.PENDING


def test_a_chained_workflow_is_held_then_starts_when_its_trigger_ends_done(
    svc: Services,
) -> None:
    trigger = submit(svc, _task("first"), "alice")
    wf = workflow.submit_workflow(svc, _workflow("next", task=trigger.id), "bob")

    # Held: registered, without its registered event, saying what it waits for
    assert wf.status is WorkflowStatus.REGISTERED
    assert wf.reason == f"waiting for task {trigger.id} to end done"
    assert not _events(svc, EventType.WORKFLOW_REGISTERED)

    payload = _end_task(svc, trigger, TaskStatus.DONE)
    chain.handle(svc, payload)
    chain.handle(svc, payload)

    assert [e.id for e in _events(svc, EventType.WORKFLOW_REGISTERED)] == [
        f"workflow-registered:{wf.id}"
    ]
    assert svc.workflows.get_workflow(wf.id).reason == ""
    assert svc.workflows.held_workflows(trigger.id, 10) == []


def test_a_chained_workflow_whose_trigger_fails_is_skipped_with_its_tasks(
    svc: Services,
) -> None:
    trigger = submit(svc, _task("first"), "alice")
    wf = workflow.submit_workflow(svc, _workflow("next", task=trigger.id), "bob")

    chain.handle(svc, _end_task(svc, trigger, TaskStatus.FAILED))

    after = svc.workflows.get_workflow(wf.id)
    assert after.status is WorkflowStatus.SKIPPED
    assert f"task {trigger.id} ended failed" in after.reason
    assert {t.status for t in svc.workflows.workflow_tasks(wf.id)} == {TaskStatus.SKIPPED}
    assert not _events(svc, EventType.WORKFLOW_REGISTERED)
    ends = [e.data for e in _events(svc, EventType.WORKFLOW_ENDED)]
    assert [(d["workflow_id"], d["status"]) for d in ends] == [(wf.id, "skipped")]


def test_a_killed_held_workflow_never_starts(svc: Services) -> None:
    trigger = submit(svc, _task("first"), "alice")
    wf = workflow.submit_workflow(svc, _workflow("next", task=trigger.id), "bob")

    workflow_actions.kill(svc, wf.id, "changed my mind", "bob")
    chain.handle(svc, _end_task(svc, trigger, TaskStatus.DONE))

    assert svc.workflows.get_workflow(wf.id).status is WorkflowStatus.ABORTED
    assert not _events(svc, EventType.WORKFLOW_REGISTERED)


def test_chains_of_chains_decide_in_turn(svc: Services) -> None:
    # Given A, a task B chained on A, a workflow C chained on B, a task D on workflow C
    a = submit(svc, _task("a"), "alice")
    b = submit(svc, _task("b", task=a.id), "alice")
    c = workflow.submit_workflow(svc, _workflow("c", task=b.id), "alice")
    d = submit(svc, _task("d", workflow=c.id, status=["skipped"]), "alice")

    # When A is aborted, then each end event is delivered as it appears
    chain.handle(svc, _end_task(svc, a, TaskStatus.ABORTED))
    b_end = next(e for e in _events(svc, EventType.TASK_ENDED) if e.data["task_id"] == b.id)
    chain.handle(svc, TaskEnded.model_validate(b_end.data))
    c_end = next(e for e in _events(svc, EventType.WORKFLOW_ENDED))
    chain.handle(svc, WorkflowEnded.model_validate(c_end.data))

    # Then B and C never start, and D (waiting for C to be skipped) starts
    assert _status(svc, b.id).status is TaskStatus.SKIPPED
    assert svc.workflows.get_workflow(c.id).status is WorkflowStatus.SKIPPED
    assert _status(svc, d.id).status is TaskStatus.REGISTERED


def test_many_held_on_one_trigger_are_decided_batch_after_batch(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chain, "BATCH", 3)
    trigger = submit(svc, _task("first"), "alice")
    held = [submit(svc, _task(f"n{i}", task=trigger.id), "bob") for i in range(7)]

    chain.handle(svc, _end_task(svc, trigger, TaskStatus.DONE))

    assert {_status(svc, t.id).status for t in held} == {TaskStatus.REGISTERED}
