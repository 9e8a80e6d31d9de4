"""Cloud Functions' output under a real functions-framework, as Cloud Logging reads it.

Two functions of `functions/main.py` (as deployed) are served by the `functions-framework`
command, each in its own process, on the Firestore, Pub/Sub and Cloud Storage emulators:
`submit` (HTTP) takes a task with a W3C trace header, `split` (a Pub/Sub CloudEvent) splits it,
and a message that is no skypanda event is dead-lettered. Every line each process wrote is
then parsed as a Cloud Logging structured entry: JSON, a severity, a message, a time, its
source location; the info lines are there (functions-framework leaves the root logger at
WARNING with no handler: they were dropped before), with their labels and the request's trace.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from skypanda.domain import events as ev
from skypanda.domain.models import Queue
from skypanda.runtime.emulators import free_port
from skypanda.wire.logs import LABELS, LABELS_KEY, SOURCE_KEY, TRACE_KEY, LogEvent

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(sys.platform == "win32", reason="functions-framework serves with gunicorn"),
]

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "functions" / "main.py"
TOKEN = "structured-logs-token"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SEVERITIES = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


@dataclass
class Served:
    target: str
    port: int
    process: subprocess.Popen[bytes]
    output: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.target} exited: {self.output.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> list[str]:
        """Stop it (gunicorn ends its worker, then exits) and return what it wrote."""
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        return self.output.read_text().splitlines()


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def prefix(firestore_emulator: Any, pubsub_emulator: Any, storage_emulator: Any) -> Iterator[str]:
    """A deployment's own names on the emulators: its queue in Firestore and its Pub/Sub
    topology (what `skypanda queues apply` and the Terraform make)."""
    from google.cloud import firestore, pubsub_v1

    from skypanda.adapters.gcp.firestore import FirestoreStore
    from skypanda.adapters.gcp.topology import ensure_topology

    name = f"lg{uuid.uuid4().hex[:6]}-"
    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    store = FirestoreStore(firestore.Client(project=project), clock=time.time, prefix=name)
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    try:
        store.put_queue(Queue(name="local", min_pilots=0, max_pilots=1))
        ensure_topology(publisher, subscriber, project, prefix=f"{name}skypanda")
    finally:
        store.close()
        publisher.stop()
        publisher.transport.close()
        subscriber.close()
    yield name


def _serve(target: str, prefix: str, out: Path) -> Served:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYPANDA_", "K_"))}
    env.update(SKYPANDA_PREFIX=prefix, SKYPANDA_TOKEN=TOKEN, SKYPANDA_BUCKET="logs-test")
    port = free_port()
    command = [str(Path(sys.executable).parent / "functions-framework"), "--target", target,
               "--source", str(MAIN), "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with out.open("wb") as sink:  # not a terminal: JSON lines
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=sink)
    return Served(target, port, process, out)


@pytest.fixture(scope="module")
def served(prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    where = tmp_path_factory.mktemp("functions")
    servers = {t: _serve(t, prefix, where / f"{t}.out") for t in ("submit", "split")}
    try:
        for server in servers.values():
            _wait(server.up, 120, f"functions-framework serving {server.target}")
        yield servers
    finally:
        for server in servers.values():
            if server.process.poll() is None:
                server.stop()


def _call(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()


def _pubsub(
    message_id: str, data: bytes, attributes: dict[str, str]
) -> tuple[bytes, dict[str, str]]:
    """A binary-mode messagePublished CloudEvent, as a push subscription delivers it."""
    message = {"messageId": message_id, "publishTime": "2026-12-01T00:00:00Z",
               "data": base64.b64encode(data).decode(), "attributes": attributes}  # fmt: skip
    headers = {
        "ce-id": message_id, "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
        "content-type": "application/json",
    }  # fmt: skip
    return json.dumps(
        {"message": message, "subscription": "projects/p/subscriptions/s"}
    ).encode(), headers


def _entries(lines: list[str], who: str) -> list[dict[str, Any]]:
    """Every line as a Cloud Logging structured entry (a line that is not fails the test)."""
    entries = []
    for n, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"{who} line {n} is not a JSON entry: {line[:300]!r}")
        assert isinstance(entry, dict), line
        assert entry["severity"] in SEVERITIES, line
        assert isinstance(entry["message"], str) and entry["message"], line
        assert entry["time"].endswith("Z"), line
        assert set(entry[SOURCE_KEY]) == {"file", "line", "function"}, line
        assert set(entry.get(LABELS_KEY, {})) <= set(LABELS), line
        entries.append(entry)
    return entries


def _events(entries: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("event") == name]


def test_every_line_a_function_writes_is_a_cloud_logging_entry_with_labels_and_trace(
    served: dict[str, Served],
) -> None:
    # Given submit and split served by functions-framework
    submit, split = served["submit"], served["split"]

    # When a user submits a task with a trace header, split gets its task.registered event,
    # and a message that is no skypanda event reaches split
    body = json.dumps({"name": "logged", "command": ["true"], "n_jobs": 3}).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
               "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}  # fmt: skip
    status, reply = _call(f"{submit.url}/v1/tasks", body, headers)
    assert status == 201, reply
    task_id = json.loads(reply)["id"]
    registered = ev.task_registered(task_id)
    data = json.dumps(registered.data).encode()
    attributes = {
        "event_id": registered.id,
        "type": str(registered.type),
        "subject": registered.subject,
    }
    status, reply = _call(split.url, *_pubsub("m-1", data, attributes))
    assert status == 200, reply
    status, reply = _call(split.url, *_pubsub("m-poison", b"{}", {"origin": "elsewhere"}))
    assert status == 200, reply  # dead-lettered and acknowledged

    # Then every line of both is a structured entry, info lines included, with labels and trace
    submitted = _entries(submit.stop(), "submit")
    splitting = _entries(split.stop(), "split")
    [line] = _events(submitted, LogEvent.TASK_SUBMITTED)
    assert line["severity"] == "INFO"
    assert line[LABELS_KEY]["task"] == task_id
    assert line[LABELS_KEY]["owner"] == "deployment"
    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    assert line[TRACE_KEY] == f"projects/{project}/traces/{TRACE_ID}"
    assert line["logging.googleapis.com/spanId"] == "00f067aa0ba902b7"
    split_lines = [e for e in splitting if e.get(LABELS_KEY, {}).get("task") == task_id]
    assert any(e["severity"] == "INFO" and "split into 3 jobs" in e["message"] for e in split_lines)
    [dead] = _events(splitting, LogEvent.EVENT_DEAD)
    assert dead["severity"] == "ERROR" and "m-poison" in dead["message"]
