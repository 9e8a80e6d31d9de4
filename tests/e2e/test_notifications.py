"""Notifications end to end: a webhook receiver started by the test (127.0.0.1) gets the signed
CloudEvent of a task's end and a workflow's end, on the embedded default and on the emulators
(where a pull subscription on the notifications topic gets them too, with their attributes);
a receiver that fails twice gets it on the third attempt; the payload validates against the
schema file."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from skypanda.domain.models import TaskSpec
from skypanda.domain.webhooks import DeliveryState, Webhook
from skypanda.domain.workflow import WorkflowSpec
from skypanda.handlers import workflow
from skypanda.handlers.notify import new_secret
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from skypanda.notifications import verify
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import wait_until

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "notification.v1.json").read_text()
)


class Receiver:
    """A webhook receiver on 127.0.0.1: answers 500 to its first `fail` POSTs, then 204, and
    keeps every request (headers, body) it got, failed ones included."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.got: list[tuple[dict[str, str], bytes]] = []
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    outer.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    status = 500 if len(outer.got) <= outer.fail else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, secret: str) -> list[dict[str, Any]]:
        """The verified CloudEvents of the requests answered 204 (structured form)."""
        return [verify(secret, h, b) for h, b in self.got[self.fail :]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(fail: int = 0) -> Receiver:
        made.append(Receiver(fail))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _run_and_check(svc: Services, receivers: Callable[..., Receiver]) -> list[dict[str, Any]]:
    """Given the owner's webhook, a task naming a receiver that fails twice and a workflow
    naming another: run both to their ends and check what each receiver got. The events the
    owner's webhook received (verified, structured)."""
    svc.settings["webhook_backoff_s"] = 0.05  # retries at the next sweeps, not after seconds
    owners, flaky, wf_hook = receivers(), receivers(fail=2), receivers()
    svc.webhooks.add_webhook(Webhook(id="wh1", owner="alice", url=owners.url, created_at=0.0))
    secret = svc.webhooks.webhook_secret("alice", new_secret())

    # When a task and a workflow, each naming a receiver, run to their ends
    spec = TaskSpec(name="calib", command=["true"], n_jobs=2, notify=[flaky.url])
    task = submit(svc, spec, "alice")
    wf_spec = {"name": "pipe", "notify": [wf_hook.url], "tasks": [
        {"name": "a", "command": ["true"], "n_jobs": 1}]}  # fmt: skip
    wf = workflow.submit_workflow(svc, WorkflowSpec.model_validate(wf_spec), "alice")

    # Then the owner's webhook gets the three ends (the task, the workflow and its task),
    # signed with the owner's secret, each valid against the schema file
    got = wait_until(
        lambda: len(owners.got) >= 3 and owners.events(secret), timeout=120, what="3 ends"
    )
    by_subject = {e["subject"]: e for e in got}
    assert by_subject[f"tasks/{task.id}"]["data"]["status"] == "done"
    assert by_subject[f"tasks/{task.id}"]["data"]["job_counts"] == {"finished": 2}
    assert by_subject[f"workflows/{wf.id}"]["data"]["task_counts"] == {"done": 1}
    assert by_subject[f"workflows/{wf.id}"]["data"]["path"] == f"/v1/workflows/{wf.id}"
    for event in got:
        jsonschema.validate(event, SCHEMA)

    # And the workflow's receiver got the workflow's end only
    wait_until(lambda: wf_hook.got, timeout=60, what="the workflow's webhook")
    assert [e["subject"] for e in wf_hook.events(secret)] == [f"workflows/{wf.id}"]

    # And the task's receiver, failing twice, got the task's end on the third attempt, each
    # attempt recorded with its HTTP status
    def delivered() -> list[Any]:
        mine = svc.webhooks.list_deliveries("alice", subject=f"tasks/{task.id}")
        return [d for d in mine if d.url == flaky.url and d.state is DeliveryState.DELIVERED]

    (delivery,) = wait_until(delivered, timeout=120, what="the flaky webhook's delivery")
    assert [a.status for a in delivery.attempts] == [500, 500, 204]
    (event,) = flaky.events(secret)
    assert event["id"] == by_subject[f"tasks/{task.id}"]["id"]
    assert [h["ce-id"] for h, _ in flaky.got] == [event["id"]] * 3  # one event, three tries
    return got


def test_webhooks_get_signed_notifications_on_the_embedded_default(
    make_system: Callable[..., LocalSystem], receivers: Callable[..., Receiver]
) -> None:
    system = make_system()
    _run_and_check(system.svc, receivers)


def test_notifications_reach_webhooks_and_the_topic_on_the_emulators(
    cloud: Any, receivers: Callable[..., Receiver]
) -> None:
    from skypanda.adapters.gcp.topology import notifications_topic_name

    # Given a pull subscription on the notifications topic
    topic = cloud.publisher.topic_path(cloud.project, notifications_topic_name(cloud.topic_prefix))
    sub = cloud.subscriber.subscription_path(cloud.project, f"{cloud.topic_prefix}-notes-test")
    cloud.subscriber.create_subscription(name=sub, topic=topic)

    got = _run_and_check(cloud.svc, receivers)

    # Then the topic got the same notifications, with attributes to filter on
    pulled: dict[str, Any] = {}

    def pull() -> bool:
        answer = cloud.subscriber.pull(subscription=sub, max_messages=20, timeout=10)
        for m in answer.received_messages:
            pulled[m.message.attributes["ce-id"]] = m.message
        return {e["id"] for e in got} <= set(pulled)

    wait_until(pull, timeout=120, what="the notifications on the topic")
    for event in got:
        message = pulled[event["id"]]
        attrs = dict(message.attributes)
        assert attrs["type"] == event["type"] and attrs["owner"] == "alice"
        assert attrs["status"] == event["data"]["status"]
        key = "task_id" if event["data"]["kind"] == "task" else "workflow_id"
        assert attrs[key] == event["data"]["id"]
        assert json.loads(message.data) == event["data"]


def test_the_cli_registers_webhooks_submits_with_notify_and_shows_deliveries(
    make_system: Callable[..., LocalSystem], receivers: Callable[..., Receiver], tmp_path: Path
) -> None:
    from tests.e2e.conftest import cli

    system = make_system()
    owners, told = receivers(), receivers()

    # Given a webhook registered with the command (it prints the owner's secret)
    added = cli(system, "webhooks", "add", owners.url, "--json")
    assert added.returncode == 0, added.stderr
    secret = json.loads(added.stdout)["secret"]
    assert cli(system, "webhooks", "secret").stdout.strip() == secret
    assert cli(system, "webhooks", "add", "ftp://example.org/x").returncode == 2

    # When a task is submitted with --notify
    task_file = tmp_path / "t.yaml"
    task_file.write_text('name: t\ncommand: ["true"]\nn_jobs: 1\n')
    sent = cli(system, "submit", str(task_file), "--notify", told.url)
    assert sent.returncode == 0, sent.stderr
    task_id = sent.stdout.strip()

    # Then both URLs get its end, signed, and the deliveries show their attempts
    wait_until(lambda: owners.got and told.got, timeout=120, what="both webhooks")
    assert told.events(secret)[0]["subject"] == f"tasks/{task_id}"

    def recorded() -> list[Any]:
        # The receiver has the POST a moment before the sender records its answer
        shown: list[Any] = json.loads(cli(system, "webhooks", "deliveries", "--json").stdout)
        return shown if all(d["state"] != "pending" for d in shown) else []

    shown = wait_until(recorded, timeout=120, what="both deliveries recorded")
    assert sorted(d["url"] for d in shown) == sorted([owners.url, told.url])
    assert all(d["state"] == "delivered" and d["attempts"][0]["status"] == 204 for d in shown)

    # And the webhook is listed, then removed
    (hook,) = json.loads(cli(system, "webhooks", "list", "--json").stdout)
    assert cli(system, "webhooks", "remove", hook["id"]).returncode == 0
    assert json.loads(cli(system, "webhooks", "list", "--json").stdout) == []
