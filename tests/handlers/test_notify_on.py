"""Opt-in notifications on the embedded store: a job end of a task that did not opt in reads and
writes nothing more than before (no job read, no webhook read, no delivery), one that opted in
stores one delivery per URL however often its end is delivered; every move of an opted-in task
or workflow (pause, resume, a user's retry) writes its change event in the same commit."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from skypanda.domain.events import EventType, JobEnded
from skypanda.domain.models import TaskSpec
from skypanda.domain.states import TaskStatus, WorkflowStatus
from skypanda.domain.webhooks import Webhook
from skypanda.handlers import ends, known, release, split, task_actions, workflow_actions
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from tests.handlers.test_workflows import Run, _spec


def _changes(tmp_path: Path) -> list[tuple[str, str, str]]:
    """(subject, previous, status) of every change event in the outbox, in order."""
    db = sqlite3.connect(tmp_path / "db.sqlite")
    try:
        rows = db.execute(
            "SELECT subject, data FROM outbox WHERE type IN (?, ?) ORDER BY seq",
            (str(EventType.TASK_CHANGED), str(EventType.WORKFLOW_CHANGED)),
        ).fetchall()
    finally:
        db.close()
    return [(s, json.loads(d)["previous"], json.loads(d)["status"]) for s, d in rows]


def _ended_job(svc: Services, spec: TaskSpec) -> JobEnded:
    """A task split into one job, which is then marked finished: its end event."""
    task = submit(svc, spec, "alice")
    split.handle(svc, split.TaskRef(task_id=task.id))
    (job,) = svc.store.list_jobs(task_id=task.id)
    return JobEnded(job_id=job.id, task_id=task.id, attempt=1, status="finished")


def test_a_job_end_of_a_task_that_did_not_opt_in_costs_no_read_or_write_more(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the owner's webhook and a task that did not opt in
    svc.webhooks.add_webhook(
        Webhook(id="w", owner="alice", url="http://127.0.0.1:9/", created_at=0)
    )
    end = _ended_job(svc, TaskSpec(name="t", command=["true"], n_jobs=1))

    # When its job's end is released, with every read and write notifications need refused
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a task that did not opt in paid for a job-end notification")

    for name in ("get_jobs", "attempts", "list_webhooks", "add_deliveries"):
        monkeypatch.setattr(svc.store, name, refused)
    release.release(svc, [end])

    # Then nothing was stored for it (and nothing refused was called)
    monkeypatch.undo()
    assert svc.webhooks.list_deliveries("alice") == []


def test_a_job_end_of_an_opted_in_task_is_stored_once_per_url(svc: Services) -> None:
    svc.webhooks.add_webhook(
        Webhook(id="w", owner="alice", url="http://127.0.0.1:9/", created_at=0)
    )
    spec = TaskSpec.model_validate({
        "name": "t", "command": ["true"], "n_jobs": 1, "notify": ["http://127.0.0.1:9/own"],
        "notify_on": ["job_end"],
    })  # fmt: skip
    end = _ended_job(svc, spec)

    release.release(svc, [end])
    release.release(svc, [end, end])  # redelivered, twice in one batch too

    found = svc.webhooks.list_deliveries("alice", subject=f"jobs/{end.job_id}")
    assert sorted(d.url for d in found) == ["http://127.0.0.1:9/", "http://127.0.0.1:9/own"]
    assert {d.headers["ce-type"] for d in found} == {"dev.skypanda.job.ended"}


def test_a_move_of_a_task_writes_a_change_only_when_it_opted_in(svc: Services) -> None:
    plain = submit(svc, TaskSpec(name="p", command=["true"], n_jobs=1), "alice")
    loud = submit(
        svc, TaskSpec.model_validate({"name": "l", "command": ["true"], "n_jobs": 1,
                                      "notify_on": ["state"]}), "alice",
    )  # fmt: skip
    assert ends.task_moved(svc, plain, TaskStatus.READY) == []
    assert [e.type for e in ends.task_moved(svc, plain, TaskStatus.ABORTED)] == [
        EventType.TASK_ENDED
    ]
    (changed,) = ends.task_moved(svc, loud, TaskStatus.READY)
    assert changed.data | {"at": 0} == {
        "task_id": loud.id, "previous": "registered", "status": "ready", "reason": "", "at": 0,
    }  # fmt: skip
    both = ends.task_moved(svc, loud, TaskStatus.ABORTED, "stop")
    assert [e.type for e in both] == [EventType.TASK_ENDED, EventType.TASK_CHANGED]
    assert ends.task_moved(svc, loud, TaskStatus.REGISTERED) == []  # not a move


def test_pause_resume_and_kill_of_an_opted_in_task_each_write_their_change(
    svc: Services, tmp_path: Path
) -> None:
    spec = TaskSpec.model_validate({"name": "l", "command": ["true"], "n_jobs": 2,
                                    "notify_on": ["state"]})  # fmt: skip
    task = submit(svc, spec, "alice")
    split.handle(svc, split.TaskRef(task_id=task.id))
    task_actions.pause(svc, task.id, "alice")
    known.forget_pause(svc, task.id)
    task_actions.resume(svc, task.id, "alice")
    task_actions.kill(svc, task.id, "alice", "enough")
    assert [(p, s) for subject, p, s in _changes(tmp_path) if subject == f"tasks/{task.id}"] == [
        ("registered", "ready"), ("ready", "paused"), ("paused", "running"),
        ("running", "aborted"),
    ]  # fmt: skip


def test_a_retried_workflow_and_its_task_write_their_changes(svc: Services, tmp_path: Path) -> None:
    # Given an opted-in workflow whose only task fails
    run = Run(svc, _spec([{"name": "a", "n_jobs": 1}], notify_on=["state"]),
              fail=lambda name, index: len(run.runs) < 2)  # fmt: skip
    assert run.go() is WorkflowStatus.FAILED
    # When it is retried and runs to done
    workflow_actions.retry(svc, run.wf.id, "me")
    assert run.go() is WorkflowStatus.DONE
    # Then each move of the workflow and of its task wrote its change
    wf_moves = [(p, s) for subj, p, s in _changes(tmp_path) if subj == f"workflows/{run.wf.id}"]
    assert wf_moves == [("registered", "running"), ("running", "failed"), ("failed", "running"),
                        ("running", "done")]  # fmt: skip
    (task,) = svc.store.workflow_tasks(run.wf.id)
    task_moves = [(p, s) for subj, p, s in _changes(tmp_path) if subj == f"tasks/{task.id}"]
    assert ("failed", "running") in task_moves and task_moves[-1] == ("running", "done")


def test_a_webhook_on_a_task_by_id_is_its_owners_and_gets_that_task_only(svc: Services) -> None:
    from skypanda.domain.errors import Forbidden, InvalidInput, NotFound
    from skypanda.domain.events import TaskEnded
    from skypanda.handlers import notify, webhooks

    mine = submit(svc, TaskSpec(name="a", command=["true"], n_jobs=1), "alice")
    other = submit(svc, TaskSpec(name="b", command=["true"], n_jobs=1), "alice")
    url = "http://127.0.0.1:9/one"

    # Only its owner (or an admin) may add one; a wrong id or two scopes are clear errors
    with pytest.raises(Forbidden, match=f"task {mine.id} belongs to alice"):
        webhooks.add(svc, "bob", url, task_id=mine.id)
    with pytest.raises(NotFound):
        webhooks.add(svc, "alice", url, task_id="t-nope")
    with pytest.raises(InvalidInput, match="not both"):
        webhooks.add(svc, "alice", url, task_id=mine.id, workflow_id="w1")
    hook, _ = webhooks.add(svc, "root", url, task_id=mine.id, admin=True)
    assert (hook.owner, hook.subject) == ("alice", f"tasks/{mine.id}")

    # When both tasks end, only the one it names is POSTed to it
    for task in (mine, other):
        notify.handle(svc, TaskEnded(task_id=task.id, status="done", owner="alice", at=5.0))
    to_it = [d.subject for d in svc.webhooks.list_deliveries("alice") if d.url == url]
    assert to_it == [f"tasks/{mine.id}"]


def test_a_chained_opted_in_task_tells_its_start_when_its_trigger_ends(
    svc: Services, tmp_path: Path
) -> None:
    from skypanda.handlers import chain
    from tests.handlers.test_chain import _end_task

    # Given an opted-in task held until another ends done
    trigger = submit(svc, TaskSpec(name="first", command=["true"], n_jobs=1), "alice")
    held = submit(
        svc,
        TaskSpec.model_validate({"name": "second", "command": ["true"], "n_jobs": 1,
                                 "start_after": {"task": trigger.id}, "notify_on": ["state"]}),
        "alice",
    )  # fmt: skip
    # When the trigger ends done (its end delivered twice)
    end = _end_task(svc, trigger, TaskStatus.DONE)
    chain.handle(svc, end)
    chain.handle(svc, end)
    # Then the held task's start is one change, pending -> registered
    mine = [(p, s) for subject, p, s in _changes(tmp_path) if subject == f"tasks/{held.id}"]
    assert mine == [("pending", "registered")]
