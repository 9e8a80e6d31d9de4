"""Opt-in notifications end to end (`notify_on:`): a webhook receiver started by the test
(127.0.0.1) gets, signed, a CloudEvent for each job end and each state change of a task and a
workflow that opted in, each valid against the schema file; a task that did not opt in makes
none of them (its end only). On the emulators the notifications topic gets them too, with the
attributes subscriptions filter on (type, kind, owner, task_id, workflow_id, job_id, status)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from skypanda.domain.models import TaskSpec
from skypanda.domain.webhooks import Webhook
from skypanda.domain.workflow import WorkflowSpec
from skypanda.handlers import workflow
from skypanda.handlers.notify import new_secret
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import wait_until
from tests.e2e.test_notifications import Receiver

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "notification.v1.json").read_text()
)
JOB_END, TASK_CHANGED = "dev.skypanda.job.ended", "dev.skypanda.task.changed"
WORKFLOW_CHANGED = "dev.skypanda.workflow.changed"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _run(svc: Services, receiver: Receiver) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Given the owner's webhook, run an opted-in task (one job finishes, one fails), a task
    that did not opt in, and an opted-in workflow, to their ends. Returns the verified events
    the webhook got, and the ids made."""
    svc.webhooks.add_webhook(Webhook(id="wh1", owner="alice", url=receiver.url, created_at=0.0))
    secret = svc.webhooks.webhook_secret("alice", new_secret())

    # When an opted-in task runs: its job "ok" finishes, its job "bad" fails (exit 3)
    loud = TaskSpec.model_validate({
        "name": "loud", "command": ["sh", "-c", 'test "{input}" = ok || exit 3'],
        "inputs": ["ok", "bad"], "max_attempts": 1, "notify_on": ["end", "job_end", "state"],
    })  # fmt: skip
    loud_task = submit(svc, loud, "alice")
    # And a task that did not opt in, and a workflow that opted in (its task too, by it)
    quiet_task = submit(svc, TaskSpec(name="quiet", command=["true"], n_jobs=2), "alice")
    wf_spec = WorkflowSpec.model_validate({
        "name": "pipe", "notify_on": ["end", "state", "job_end"],
        "tasks": [{"name": "a", "command": ["true"], "n_jobs": 1}],
    })  # fmt: skip
    wf = workflow.submit_workflow(svc, wf_spec, "alice")
    ids = {"loud": loud_task.id, "quiet": quiet_task.id, "wf": wf.id}

    # Then the webhook gets the three ends (the two tasks', the workflow's) and, before them,
    # everything they opted in to
    # (each delivery is POSTed on its own: a job's end may arrive after its task's end, so
    # the wait is for the three job ends too)
    def ends() -> list[dict[str, Any]] | None:
        got = receiver.events(secret)
        ended = {e["subject"] for e in got if e["type"].endswith(".ended")}
        want = {f"tasks/{loud_task.id}", f"tasks/{quiet_task.id}", f"workflows/{wf.id}"}
        job_ends = sum(e["type"] == JOB_END for e in got)

        # and the state changes checked below: they too may arrive after the ends
        def moves(kind: str, ident: str) -> int:
            return sum(e["type"] == kind and e["data"]["id"] == ident for e in got)

        wf_task = any(e["type"] == TASK_CHANGED and e["data"]["workflow_id"] == wf.id for e in got)
        changed = moves(TASK_CHANGED, loud_task.id) >= 3 and moves(WORKFLOW_CHANGED, wf.id) >= 2
        return got if want <= ended and job_ends >= 3 and changed and wf_task else None

    got = wait_until(ends, timeout=180, what="the ends of the two tasks and the workflow")
    for event in got:
        jsonschema.validate(event, SCHEMA)
    return got, ids


def _check(got: list[dict[str, Any]], ids: dict[str, str]) -> None:
    loud, quiet, wf = ids["loud"], ids["quiet"], ids["wf"]
    jobs = {e["data"]["id"]: e["data"] for e in got if e["type"] == JOB_END}
    loud_jobs = sorted((j for j in jobs.values() if j["task_id"] == loud), key=lambda j: j["index"])
    # Each job end of the opted-in task, with its attempt, exit code, diagnosis and log
    assert [(j["status"], j["exit_code"], j["attempt"]) for j in loud_jobs] == [
        ("finished", 0, 1),
        ("failed", 3, 1),
    ]
    assert loud_jobs[1]["error_code"] is not None and loud_jobs[1]["diagnosis"]
    assert all(j["log_uri"] and j["path"] == f"/v1/jobs/{j['id']}" for j in loud_jobs)
    # Each of its state changes, from and to
    moves = {(e["data"]["previous"], e["data"]["status"])
             for e in got if e["type"] == TASK_CHANGED and e["data"]["id"] == loud}  # fmt: skip
    assert moves == {("registered", "ready"), ("ready", "running"), ("running", "failed")}
    # The workflow's changes, and its task's job end and changes (the workflow opted in)
    wf_changes = [e["data"] for e in got if e["type"] == WORKFLOW_CHANGED]
    wf_moves = {(d["previous"], d["status"]) for d in wf_changes if d["id"] == wf}
    assert wf_moves == {("registered", "running"), ("running", "done")}
    wf_jobs = [j for j in jobs.values() if j["workflow_id"] == wf]
    assert [j["status"] for j in wf_jobs] == ["finished"]
    assert any(e["type"] == TASK_CHANGED and e["data"]["workflow_id"] == wf for e in got)
    # And nothing but its end of the task that did not opt in
    about_quiet = [e for e in got if quiet in (e["data"]["id"], e["data"].get("task_id"))]
    assert [e["type"] for e in about_quiet] == ["dev.skypanda.task.ended"]
    # One event per end or change (each POSTed once here: the receiver answers 204)
    assert len({e["id"] for e in got}) == len(got)


def test_opted_in_job_ends_and_changes_reach_a_webhook_on_the_embedded_default(
    make_system: Callable[..., LocalSystem], receiver: Receiver
) -> None:
    system = make_system()
    got, ids = _run(system.svc, receiver)
    _check(got, ids)
    # The deliveries of the task that did not opt in: its end only
    quiet = system.svc.webhooks.list_deliveries("alice", subject=f"tasks/{ids['quiet']}")
    assert len(quiet) == 1


def test_opted_in_notifications_reach_the_topic_with_filter_attributes_on_the_emulators(
    cloud: Any, receiver: Receiver
) -> None:
    from skypanda.adapters.gcp.topology import notifications_topic_name

    # Given a pull subscription on the notifications topic
    topic = cloud.publisher.topic_path(cloud.project, notifications_topic_name(cloud.topic_prefix))
    sub = cloud.subscriber.subscription_path(cloud.project, f"{cloud.topic_prefix}-notify-on")
    cloud.subscriber.create_subscription(name=sub, topic=topic)

    got, ids = _run(cloud.svc, receiver)
    _check(got, ids)

    # Then the topic got every notification the webhook got, with its filter attributes
    pulled: dict[str, Any] = {}

    def pull() -> bool:
        answer = cloud.subscriber.pull(subscription=sub, max_messages=50, timeout=10)
        for m in answer.received_messages:
            pulled[m.message.attributes["ce-id"]] = m.message
        if answer.received_messages:
            cloud.subscriber.acknowledge(
                subscription=sub, ack_ids=[m.ack_id for m in answer.received_messages]
            )
        return {e["id"] for e in got} <= set(pulled)

    wait_until(pull, timeout=120, what="the notifications on the topic")
    for event in got:
        message, data = pulled[event["id"]], event["data"]
        attrs = dict(message.attributes)
        assert json.loads(message.data) == data
        assert (attrs["type"], attrs["kind"], attrs["owner"], attrs["status"]) == (
            event["type"], data["kind"], "alice", data["status"],
        )  # fmt: skip
        if data["kind"] == "job":
            assert (attrs["job_id"], attrs["task_id"]) == (data["id"], data["task_id"])
        elif data["kind"] in ("task", "task_state"):
            assert attrs["task_id"] == data["id"]
        else:
            assert attrs["workflow_id"] == data["id"]
        if data.get("workflow_id"):
            assert attrs["workflow_id"] == data["workflow_id"]
    kinds = {dict(m.attributes)["kind"] for m in pulled.values()}
    assert {"job", "task_state", "workflow_state", "task", "workflow"} <= kinds


def test_the_cli_submits_with_notify_on_and_adds_a_webhook_to_a_running_task(
    make_system: Callable[..., LocalSystem], receiver: Receiver, tmp_path: Path
) -> None:
    from tests.e2e.conftest import cli

    system = make_system()
    go = tmp_path / "go"
    # Given a task submitted with --notify-on job_end whose job waits for the test's signal
    task_file = tmp_path / "t.yaml"
    task_file.write_text(
        f"name: t\ncommand: [sh, -c, 'while [ ! -e {go} ]; do sleep 0.05; done']\nn_jobs: 1\n"
    )
    bad = cli(system, "submit", str(task_file), "--notify-on", "jobs")
    assert bad.returncode == 2 and "'jobs' is not one of 'end', 'job_end', 'state'" in bad.stderr
    sent = cli(system, "submit", str(task_file), "--notify-on", "job_end")
    assert sent.returncode == 0, sent.stderr
    task_id = sent.stdout.strip()

    # When a webhook is added to it by its id, then its job ends
    added = cli(system, "webhooks", "add", receiver.url, "--task", task_id, "--json")
    assert added.returncode == 0, added.stderr
    hook = json.loads(added.stdout)
    assert hook["subject"] == f"tasks/{task_id}"
    assert cli(system, "webhooks", "add", receiver.url, "--task", "t-nope").returncode == 1
    go.touch()

    # Then the webhook gets the job's end, signed, and not the task's end (not opted in)
    (event,) = wait_until(lambda: receiver.events(hook["secret"]), timeout=120, what="job end")
    assert (event["type"], event["data"]["task_id"]) == (JOB_END, task_id)
    jsonschema.validate(event, SCHEMA)
    wait_until(lambda: _end_handled(system, task_id), timeout=60, what="the task's end handled")
    delivered = system.svc.webhooks.list_deliveries(hook["owner"])
    assert [d.subject for d in delivered] == [f"jobs/{event['data']['id']}"]  # no task end
    listed = cli(system, "webhooks", "list").stdout
    assert f"tasks/{task_id}" in listed


def _end_handled(system: LocalSystem, task_id: str) -> bool:
    """Whether the task's end event was delivered to its handlers (notify among them)."""
    import sqlite3

    db = sqlite3.connect(system.opts.home / "skypanda.db")
    try:
        row = db.execute(
            "SELECT delivered_at FROM outbox WHERE type = ? AND subject = ?",
            ("dev.skypanda.task.ended", f"tasks/{task_id}"),
        ).fetchone()
    finally:
        db.close()
    return row is not None and row[0] is not None
