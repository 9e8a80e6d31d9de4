"""`notify_on:` and the job-end and state-change notifications, as pure logic: the field is
validated with errors naming the value, a workflow opts its tasks in to job ends and changes
(not to their ends), the new kinds make CloudEvents of their own type that validate against the
schema file (and a notification as sent before they existed still does), and their Pub/Sub
attributes carry what subscriptions filter on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from skypanda.domain import events as ev
from skypanda.domain.events import TaskChanged, WorkflowChanged, payload_of
from skypanda.domain.models import TaskSpec
from skypanda.domain.notifications import (
    JobEndNotification,
    NotificationCloudEvent,
    NotifyOn,
    StateNotification,
    cloud_event,
    notified,
)
from skypanda.domain.workflow import WorkflowSpec

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "notification.v1.json").read_text()
)
JOB = JobEndNotification(
    kind="job", id="j1", task_id="t1", workflow_id="w1", name="calib", owner="alice", index=4,
    status="failed", attempt=2, max_attempts=2, exit_code=3, error_code=1101,
    diagnosis="exit 3", log_uri="file:///logs/j1.2.log", pilot_id="p1", started_at=10.0,
    ended_at=12.5, path="/v1/jobs/j1",
)  # fmt: skip
CHANGE = StateNotification(
    kind="task_state", id="t1", name="calib", owner="alice", workflow_id=None,
    previous="ready", status="running", at=11.0, path="/v1/tasks/t1",
)  # fmt: skip


def _task(**extra: Any) -> TaskSpec:
    return TaskSpec.model_validate({"name": "t", "command": ["true"], "n_jobs": 1, **extra})


def test_a_task_is_told_of_its_end_only_unless_it_opts_in() -> None:
    assert _task().notify_on == [NotifyOn.END]
    assert _task(notify_on=["state", "job_end", "state"]).notify_on == ["state", "job_end"]
    assert _task(notify_on=[]).notify_on == []  # nothing at all, not even its end


@pytest.mark.parametrize("value", [["end", "jobend"], "state", [None]])
def test_an_unknown_notify_on_value_is_an_error_naming_the_field(value: object) -> None:
    with pytest.raises(ValidationError, match="notify_on") as e:
        _task(notify_on=value)
    if value == ["end", "jobend"]:
        assert "notify_on.1" in str(e.value) and "'end', 'job_end' or 'state'" in str(e.value)


def test_a_workflow_has_notify_on_too_and_its_tasks_keep_their_own() -> None:
    wf = WorkflowSpec.model_validate({
        "name": "w", "notify_on": ["state"],
        "tasks": [{"name": "a", "command": ["true"], "n_jobs": 1, "notify_on": ["job_end"]}],
    })  # fmt: skip
    assert wf.notify_on == [NotifyOn.STATE]
    assert wf.tasks[0].task_spec().notify_on == [NotifyOn.JOB_END]
    with pytest.raises(ValidationError, match="notify_on"):
        WorkflowSpec.model_validate({**wf.model_dump(), "notify_on": ["states"]})


def test_a_workflow_opts_its_tasks_in_to_job_ends_and_changes_but_not_to_their_ends() -> None:
    # Given a task that wants no end, in a workflow that wants everything
    everything = list(NotifyOn)
    # Then the task is told of its jobs and changes, not of its end
    assert notified([], everything) == {NotifyOn.JOB_END, NotifyOn.STATE}
    assert notified([NotifyOn.END]) == {NotifyOn.END}
    assert notified([NotifyOn.END], [NotifyOn.STATE]) == {NotifyOn.END, NotifyOn.STATE}


@pytest.mark.parametrize(
    ("data", "type_", "subject"),
    [
        (JOB, "dev.skypanda.job.ended", "jobs/j1"),
        (CHANGE, "dev.skypanda.task.changed", "tasks/t1"),
        (
            CHANGE.model_copy(update={"kind": "workflow_state", "id": "w1"}),
            "dev.skypanda.workflow.changed",
            "workflows/w1",
        ),
    ],
)
def test_each_new_kind_makes_its_own_cloudevent_valid_against_the_schema(
    data: JobEndNotification | StateNotification, type_: str, subject: str
) -> None:
    event = cloud_event("e1", "/skypanda", data)
    assert (event.type, event.subject) == (type_, subject)
    structured = event.model_dump(mode="json")
    jsonschema.validate(structured, SCHEMA)
    # A receiver parses the body back to the same data
    assert json.loads(event.body()) == structured["data"]
    # And a payload that does not fit its type is refused, by the model and the schema
    wrong = {**structured, "type": "dev.skypanda.task.ended"}
    with pytest.raises(ValidationError, match="notification has type"):
        NotificationCloudEvent.model_validate(wrong)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**structured, "data": {**structured["data"], "kind": "jobs"}}, SCHEMA)


def test_a_notification_as_sent_before_the_new_kinds_still_validates() -> None:
    # Given a task end exactly as version 1 sent it before job ends and changes existed
    before = {
        "specversion": "1.0", "id": "task-ended:t1:done:1060.500000", "source": "/skypanda",
        "type": "dev.skypanda.task.ended", "subject": "tasks/t1",
        "time": "1970-01-01T00:17:40.500Z", "datacontenttype": "application/json",
        "dataschema": "https://skypanda.dev/schemas/notification.v1.json",
        "data": {
            "version": 1, "kind": "task", "id": "t1", "name": "calib", "owner": "alice",
            "status": "done", "reason": "", "workflow_id": None, "job_counts": {"finished": 3},
            "task_counts": {}, "created_at": 1000.0, "ended_at": 1060.5, "path": "/v1/tasks/t1",
        },
    }  # fmt: skip
    # Then the schema file still accepts it, and the model reads it
    jsonschema.validate(before, SCHEMA)
    assert NotificationCloudEvent.model_validate(before).data.kind == "task"


def test_pubsub_attributes_name_kind_job_task_workflow_and_status() -> None:
    job = cloud_event("e1", "/skypanda", JOB).attributes()
    assert {k: job[k] for k in ("type", "kind", "owner", "task_id", "workflow_id", "job_id")} == {
        "type": "dev.skypanda.job.ended", "kind": "job", "owner": "alice", "task_id": "t1",
        "workflow_id": "w1", "job_id": "j1",
    }  # fmt: skip
    assert job["status"] == "failed" and job["ce-type"] == "dev.skypanda.job.ended"
    change = cloud_event("e2", "/skypanda", CHANGE).attributes()
    assert (change["kind"], change["task_id"], change["status"]) == ("task_state", "t1", "running")
    assert "workflow_id" not in change and "job_id" not in change  # empty ones left out


def test_change_events_have_one_id_per_move_and_decode_to_their_payloads() -> None:
    moved = ev.task_changed("t1", "ready", "running", at=5.0, reason="r")
    assert moved.id == ev.task_changed("t1", "ready", "running", at=5.0).id  # redelivered: same
    assert moved.id != ev.task_changed("t1", "ready", "running", at=6.0).id  # a later move
    assert payload_of(moved) == TaskChanged(
        task_id="t1", previous="ready", status="running", reason="r", at=5.0
    )
    wf = ev.workflow_changed("w1", "registered", "running", at=1.0)
    assert payload_of(wf) == WorkflowChanged(
        workflow_id="w1", previous="registered", status="running", at=1.0
    )
    assert ev.SUBSCRIBERS[ev.EventType.TASK_CHANGED] == ("notify",)
