"""Submission by Pub/Sub message, end to end on the emulators: another pipeline publishes a
task to the submission topic and it runs; one key makes one task however often its message
comes; a malformed message lands on the dead letter with its reason, the publisher gets a
rejection on the notifications topic, and nothing is stored."""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from skypanda.adapters.gcp.pubsub_bus import REJECTED
from skypanda.adapters.gcp.topology import notifications_topic_name, topic_name
from skypanda.domain.errors import NotFound
from skypanda.domain.events import EventType
from skypanda.handlers.intake import submission_id
from skypanda.pilot.client import ApiClient
from skypanda.runtime.emulated import EmulatedCloud
from skypanda.runtime.intake import encode_submission
from tests.e2e.conftest import cli, wait_until
from tests.schemas import check_submission

TASK = "name: by-message\ncommand: [sh, -c, 'echo {index}']\nn_jobs: 2\nqueue: local\n"


def _publish(cloud: EmulatedCloud, data: bytes, **attributes: str) -> str:
    topic = cloud.publisher.topic_path(
        cloud.project, topic_name(EventType.SUBMISSION, cloud.topic_prefix)
    )
    return str(cloud.publisher.publish(topic, data, **attributes).result(timeout=30))


def _pull_subscription(cloud: EmulatedCloud, topic: str) -> str:
    """A pull subscription of the test's own on `topic` (made before anything is published)."""
    path = cloud.subscriber.subscription_path(cloud.project, f"{topic}--test{uuid.uuid4().hex[:6]}")
    topic_path = cloud.publisher.topic_path(cloud.project, topic)
    cloud.subscriber.create_subscription(request={"name": path, "topic": topic_path})
    return path


def _pulled(cloud: EmulatedCloud, path: str, seen: list[Any]) -> list[Any]:
    """Every message pulled from `path` so far (acknowledged), `seen` kept between calls."""
    got = cloud.subscriber.pull(request={"subscription": path, "max_messages": 50}, timeout=10)
    if got.received_messages:
        ack_ids = [m.ack_id for m in got.received_messages]
        cloud.subscriber.acknowledge(request={"subscription": path, "ack_ids": ack_ids})
        seen.extend(m.message for m in got.received_messages)
    return seen


def _task(cloud: EmulatedCloud, task_id: str) -> Any:
    try:
        return cloud.store.get_task(task_id, counts=False)
    except NotFound:
        return None


def test_a_task_published_as_a_message_runs_to_done_once_per_key(
    cloud: EmulatedCloud, tmp_path: Path
) -> None:
    api = ApiClient(cloud.url, cloud.token)
    owner = api.call("GET", "/v1/whoami")["name"]
    # Given a task file, published with `skypanda publish` and the CLI login
    path = tmp_path / "task.yaml"
    path.write_text(TASK)
    topic = topic_name(EventType.SUBMISSION, cloud.topic_prefix)
    published = cli(cloud, "publish", str(path), "--topic", topic, "--key", "run-1")
    assert published.returncode == 0, published.stderr
    assert "key run-1" in published.stdout and "message" in published.stdout
    # Then it runs to done, under the id the key makes, owned by the publisher's principal
    task_id = submission_id("task", owner, "run-1")
    wait_until(lambda: _task(cloud, task_id), 120, "the published task to be stored")
    done = wait_until(
        lambda: api.call("GET", f"/v1/tasks/{task_id}")["status"] in ("done", "failed"),
        180, "the published task to end",
    )  # fmt: skip
    assert done and api.call("GET", f"/v1/tasks/{task_id}")["status"] == "done"
    assert api.call("GET", f"/v1/tasks/{task_id}")["owner"] == owner

    # When a message with a new key is delivered three times (a push redelivered) ...
    data = encode_submission("task", TASK.replace("by-message", "again"), "application/yaml")
    assert check_submission(data)["kind"] == "task"  # what we publish fits the schema
    message = {
        "data": base64.b64encode(data).decode(),
        "messageId": "push-1",
        "attributes": {"key": "run-2", "authorization": f"Bearer {cloud.token}"},
    }
    body = json.dumps({"message": message, "subscription": "projects/p/subscriptions/s"})
    for _ in range(3):
        request = urllib.request.Request(
            cloud.function_url("intake"), body.encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            assert answer.status == 200
    # ... and republished twice with the same key (a publisher's retries)
    for _ in range(2):
        _publish(cloud, data, key="run-2", authorization=f"Bearer {cloud.token}")
    # Then there is one task for that key
    again = submission_id("task", owner, "run-2")
    wait_until(lambda: _task(cloud, again), 120, "the redelivered task to be stored")
    wait_until(lambda: cloud.store.get_task(again).n_jobs == 2, 60, "the redelivered task's jobs")
    named = [t for t in cloud.store.list_tasks() if t.spec.name == "again"]
    assert [t.id for t in named] == [again]


def test_a_malformed_submission_is_dead_lettered_and_rejected_and_nothing_is_stored(
    cloud: EmulatedCloud,
) -> None:
    # Given subscriptions on the dead letter's hold and on the notifications topic
    hold = cloud.subscriber.subscription_path(
        cloud.project, f"{cloud.topic_prefix}-dead-letter--hold"
    )
    notes = _pull_subscription(cloud, notifications_topic_name(cloud.topic_prefix))
    auth = f"Bearer {cloud.token}"
    bad_yaml = encode_submission("task", "name: [unclosed", "application/yaml")
    unknown = encode_submission("task", TASK + "colour: blue\n", "application/yaml")
    good = encode_submission("task", TASK, "application/yaml")
    for data in (bad_yaml, unknown, good):
        check_submission(data)  # each fits the schema: it is refused for what it says
    # When four malformed submissions are published
    _publish(cloud, bad_yaml, key="bad-yaml", authorization=auth)
    _publish(cloud, unknown, key="unknown-field", authorization=auth)
    _publish(cloud, good, authorization=auth)  # no key
    _publish(cloud, good, key="bad-credential", authorization="Bearer stolen")
    expected = {
        "bad-yaml": "not valid YAML",
        "unknown-field": "colour",
        "": "attribute key must match",
        "bad-credential": "credential refused",
    }
    # Then each lands on the dead letter with its reason, and without its credential
    dead: list[Any] = []
    wait_until(lambda: len(_pulled(cloud, hold, dead)) >= 4, 120, "4 dead letters")
    reasons = {m.attributes.get("key", ""): m.attributes["dead_reason"] for m in dead}
    for key, says in expected.items():
        assert says in reasons[key], (key, reasons[key])
    assert all("authorization" not in m.attributes for m in dead)
    # And a rejection with the key and the reason reaches the notifications topic
    rejections: list[Any] = []
    wait_until(lambda: len(_pulled(cloud, notes, rejections)) >= 4, 120, "4 rejections")
    assert {m.attributes["type"] for m in rejections} == {REJECTED}
    by_key = {m.attributes.get("key", ""): json.loads(m.data) for m in rejections}
    for key, says in expected.items():
        event = by_key[key]
        assert event["type"] == REJECTED and event["specversion"] == "1.0"
        assert event["data"]["key"] == key and says in event["data"]["reason"]
    # And nothing was stored
    assert cloud.store.list_tasks() == []
