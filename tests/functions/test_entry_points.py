"""Every Cloud Functions entry point, driven through functions-framework's own test client with
the CloudEvent shapes Google Cloud sends (Pub/Sub messagePublished; Firestore document.written
with protobuf DocumentEventData). The services behind them are the embedded ones here (the
adapters have their own suites); what is under test is decoding, routing and idempotency."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app
from google.events.cloud.firestore_v1.types import Document, DocumentEventData, Value

from skypanda.adapters.local.tokens import LocalTokens
from skypanda.domain import events as ev
from skypanda.domain.events import Event
from skypanda.domain.identity import Role
from skypanda.domain.models import JobReport, Pilot, Queue, Resources, TaskSpec
from skypanda.domain.states import JobStatus, PilotStatus, TaskStatus
from skypanda.handlers import dispatch, task_actions
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from skypanda.runtime import cloudfn
from tests.support import FakeClock, sqlite_services


class DeadLetterBox:
    def __init__(self) -> None:
        self.parked: list[tuple[str, str]] = []

    def dead_letter(self, event_id: str, data: bytes, attributes: Any, reason: str) -> None:
        self.parked.append((event_id, reason))


MAIN = str(Path(__file__).resolve().parents[2] / "functions" / "main.py")  # as deployed
TOKEN = "test-token"


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    with sqlite_services(tmp_path, FakeClock(), Queue(name="local", max_pilots=2)) as services:
        forwarded: list[Event] = []
        identity = LocalTokens(None)
        identity.accept(TOKEN, "deployment", Role.ADMIN)
        cloudfn.configure(
            services, identity, forward=forwarded.append, dead_letters=DeadLetterBox()
        )
        services.settings["forwarded"] = forwarded
        yield services


def _client(target: str, signature: str) -> Any:
    return create_app(target, MAIN, signature).test_client()


def _pubsub(
    event: Event | None, msg_id: str = "m1", attributes: dict[str, str] | None = None
) -> CloudEvent:
    """A messagePublished CloudEvent carrying `event`, or (None) a message with only
    `attributes` and no data (a tick: `{"type": "dev.skypanda.tick"}`)."""
    message: dict[str, Any] = {"messageId": msg_id, "publishTime": "2026-11-22T00:00:00Z"}
    if event is not None:
        message["data"] = base64.b64encode(json.dumps(event.data).encode()).decode()
        message["attributes"] = {
            "event_id": event.id,
            "type": str(event.type),
            "subject": event.subject,
        }
    else:
        message["data"] = ""
        message["attributes"] = attributes or {}
    return cloudfn.cloud_event(
        {"id": msg_id, "type": cloudfn.PUBSUB_PUBLISHED,
         "source": "//pubsub.googleapis.com/projects/p/topics/t"},
        {"message": message, "subscription": "projects/p/subscriptions/s"},
    )  # fmt: skip


def _written(event: Event, *, update: bool = False) -> CloudEvent:
    doc = Document(
        name=f"projects/p/databases/(default)/documents/events/{event.id}",
        fields={"type": Value(string_value=str(event.type)),
                "subject": Value(string_value=event.subject),
                "data": Value(string_value=json.dumps(event.data))},
    )  # fmt: skip
    payload = DocumentEventData(value=doc, old_value=doc if update else None)
    return cloudfn.cloud_event(
        {"id": f"w-{event.id}", "type": cloudfn.FIRESTORE_WRITTEN,
         "source": "//firestore.googleapis.com/projects/p/databases/(default)",
         "subject": f"documents/events/{event.id}", "datacontenttype": "application/protobuf"},
        DocumentEventData.serialize(payload),
    )  # fmt: skip


def _post(client: Any, event: CloudEvent, *, binary: bool = False) -> Any:
    headers, body = to_binary(event) if binary else to_structured(event)
    return client.post("/", headers=headers, data=body)


def _task(svc: Services, n: int = 3) -> str:
    return submit(svc, TaskSpec(name="t", command=["true"], n_jobs=n), owner="x").id


def test_submit_serves_the_users_api_with_its_token(svc: Services) -> None:
    client = _client("submit", "http")
    body = {"name": "hello", "command": ["echo", "{index}"], "n_jobs": 2}
    assert client.post("/v1/tasks", json=body).status_code == 401
    created = client.post("/v1/tasks", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert created.status_code == 201 and created.get_json()["status"] == "registered"
    bad = client.post("/v1/tasks", json={"name": "x"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert bad.status_code == 422 and "command" in bad.get_json()["message"]


def test_dispatch_serves_only_the_pilots_routes(svc: Services) -> None:
    client = _client("dispatch", "http")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    reg = client.post("/v1/pilots", json={"queue": "local"}, headers=auth)
    assert reg.status_code == 201
    assert client.get("/v1/tasks", headers=auth).status_code == 404


def test_split_on_pubsub_is_idempotent(svc: Services) -> None:
    # Given a registered task and its task.registered event as Pub/Sub delivers it
    task_id = _task(svc, 5)
    client = _client("split", "cloudevent")
    message = _pubsub(ev.task_registered(task_id))
    # When it is delivered twice (Pub/Sub delivers at least once)
    assert _post(client, message).status_code == 200
    assert _post(client, message, binary=True).status_code == 200
    # Then the task was split once
    assert svc.store.get_task(task_id).status is TaskStatus.READY
    assert svc.store.job_counts(task_id) == {JobStatus.ACTIVATED: 5}


def test_poison_message_is_acknowledged_not_retried(svc: Services) -> None:
    client = _client("split", "cloudevent")
    poison = _pubsub(
        Event(id="e1", type=ev.EventType.TASK_REGISTERED, subject="x", data={"nope": 1})
    )
    assert _post(client, poison).status_code == 200


def test_sweep_on_a_scheduler_tick_declares_silent_pilots_missed(svc: Services) -> None:
    # Given a pilot last heard from long ago
    clock = svc.clock
    assert isinstance(clock, FakeClock)
    svc.store.add_pilot(
        Pilot(
            id="p1",
            queue="local",
            status=PilotStatus.RUNNING,
            created_at=clock.t,
            heartbeat_at=clock.t,
        )
    )
    clock.t += 3600
    # When Cloud Scheduler's tick (a message with only the attribute type) reaches sweep
    tick = _pubsub(None, attributes={"type": str(ev.EventType.TICK)})
    assert _post(_client("sweep", "cloudevent"), tick).status_code == 200
    # Then the pilot is missed
    assert svc.store.get_pilot("p1").status is PilotStatus.MISSED


def test_a_message_without_a_type_is_no_tick_and_goes_to_the_dead_letter(svc: Services) -> None:
    # Given a pilot last heard from long ago
    clock = svc.clock
    assert isinstance(clock, FakeClock)
    svc.store.add_pilot(
        Pilot(id="p1", queue="local", status=PilotStatus.RUNNING, created_at=clock.t,
              heartbeat_at=clock.t)
    )  # fmt: skip
    clock.t += 3600
    # When a message with no type attribute reaches sweep
    assert _post(_client("sweep", "cloudevent"), _pubsub(None, "m9")).status_code == 200
    # Then it is dead-lettered with why, acknowledged, and no sweep ran
    box = cloudfn._state["dead_letters"]
    assert isinstance(box, DeadLetterBox)
    ((event_id, reason),) = box.parked
    assert event_id == "m9" and "no type attribute" in reason
    assert svc.store.get_pilot("p1").status is PilotStatus.RUNNING


def _run_jobs(svc: Services, task_id: str, status: JobStatus) -> list[Event]:
    """Split, claim and end every job of the task; return the job.ended events emitted."""
    from skypanda.handlers import split

    split.handle(svc, ev.TaskRef(task_id=task_id))
    pilot, _ = dispatch.register(
        svc, pilot_id=None, queue="local", host="h", pid=1, resources=Resources(), version="v"
    )
    jobs = dispatch.acquire(svc, pilot.id, 100)
    reports = [
        JobReport(
            job_id=j.id,
            attempt=j.attempt,
            status=status,
            exit_code=0,
            error_code=None if status is JobStatus.FINISHED else 1144,
        )
        for j in jobs
    ]
    if status is JobStatus.FAILED:
        task_actions.kill(svc, task_id, None, "test")
    dispatch.update(svc, pilot.id, reports, {})
    return [
        s.event for s in svc.store.pending_events(1000) if s.event.type is ev.EventType.JOB_ENDED
    ]


def test_release_on_outbox_document_rolls_the_task_up_whatever_the_order(svc: Services) -> None:
    # Given a task whose three jobs ended, and their job.ended outbox documents
    task_id = _task(svc, 3)
    ended = _run_jobs(svc, task_id, JobStatus.FINISHED)
    assert len(ended) == 3
    client = _client("release", "cloudevent")
    # When Eventarc delivers the document-written events in reverse order, one of them twice
    for event in [*reversed(ended), ended[0]]:
        assert _post(client, _written(event), binary=True).status_code == 200
    # Then the task is done, once
    assert svc.store.get_task(task_id).status is TaskStatus.DONE


def test_release_ignores_updates_of_outbox_documents(svc: Services) -> None:
    task_id = _task(svc, 1)
    (ended,) = _run_jobs(svc, task_id, JobStatus.FINISHED)
    client = _client("release", "cloudevent")
    assert _post(client, _written(ended, update=True), binary=True).status_code == 200
    assert svc.store.get_task(task_id).status is TaskStatus.RUNNING


def test_release_forwards_other_events_to_pubsub(svc: Services) -> None:
    task_id = _task(svc, 1)
    event = ev.task_registered(task_id)
    assert _post(_client("release", "cloudevent"), _written(event), binary=True).status_code == 200
    assert svc.settings["forwarded"] == [event]


def test_scale_without_a_launcher_does_nothing(svc: Services) -> None:
    nudge = ev.jobs_activated("local", 3, key="k")
    assert _post(_client("scale", "cloudevent"), _pubsub(nudge)).status_code == 200
