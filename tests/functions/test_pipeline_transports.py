"""One error policy on every transport: the outbox router (embedded), a Pub/Sub push (a Cloud
Function per subscription) and a Firestore document.written on the outbox (the `release`
function) deliver the same poison event and the same failing event with the same outcome:

- poison (data not of its type's shape): parked on the transport's dead letter with the reason,
  and acknowledged (never retried);
- failing (a transient error): retried by the transport (router: kept, tried again; Pub/Sub and
  Eventarc: the function fails so the event is delivered again), and once out of tries, dead
  with its reason;
- the pipeline counts the same outcomes whichever way it came.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cloudevents.http import CloudEvent
from google.events.cloud.firestore_v1.types import Document, DocumentEventData, Value

from skypanda.adapters.local.tokens import LocalTokens
from skypanda.domain import events as ev
from skypanda.domain.errors import BackendUnavailable
from skypanda.domain.events import Event, EventType, JobEnded
from skypanda.handlers.pipeline import MAX_TRIES, Pipeline
from skypanda.handlers.services import Services
from skypanda.runtime import cloudfn
from skypanda.runtime.router import Router

POISON = Event(id="job-ended:poison", type=EventType.JOB_ENDED, subject="jobs/x", data={"job": 1})
FAILING = ev.job_ended("j-fail", 1, "t-fail", "finished")


class DeadLetterBox:
    def __init__(self) -> None:
        self.parked: list[tuple[str, str]] = []

    def dead_letter(self, event_id: str, data: bytes, attributes: Any, reason: str) -> None:
        self.parked.append((event_id, reason))


def failing_release(svc: Services, ended: JobEnded) -> None:
    raise BackendUnavailable(f"Firestore is down (releasing {ended.job_id})")


def _pipeline(svc: Services) -> Pipeline:
    # The real routing table, with release failing as a backend outage would make it.
    return Pipeline(svc, handlers={"release": failing_release}, batch_routes={})


# -- the three transports, each returning what became of the event ------------------------------


def via_router(svc: Services, pipe: Pipeline, event: Event) -> str:
    svc.store.add_events([event])
    Router(pipe, svc.store).deliver_once()
    dead = dict(svc.store.dead_events())  # type: ignore[attr-defined]
    if event.id in dead:
        return f"dead: {dead[event.id]}"
    (pending,) = [s for s in svc.store.pending_events(100) if s.event.id == event.id]
    return f"retry (tries {pending.tries})"


def _pubsub(event: Event, attempt: int) -> CloudEvent:
    message = {
        "messageId": f"m-{event.id}",
        "data": base64.b64encode(json.dumps(event.data).encode()).decode(),
        "attributes": {"event_id": event.id, "type": str(event.type), "subject": event.subject},
        "deliveryAttempt": attempt,
    }
    return cloudfn.cloud_event(
        {"id": f"m-{event.id}", "type": cloudfn.PUBSUB_PUBLISHED, "source": "//pubsub"},
        {"message": message, "subscription": "projects/p/subscriptions/s"},
    )


def _written(event: Event) -> CloudEvent:
    doc = Document(
        name=f"projects/p/databases/(default)/documents/events/{event.id}",
        fields={
            "type": Value(string_value=str(event.type)),
            "subject": Value(string_value=event.subject),
            "data": Value(string_value=json.dumps(event.data)),
        },
    )
    return cloudfn.cloud_event(
        {"id": f"w-{event.id}", "type": cloudfn.FIRESTORE_WRITTEN, "source": "//firestore"},
        DocumentEventData.serialize(DocumentEventData(value=doc)),
    )


def _settled(call: Any, box: DeadLetterBox, event: Event) -> str:
    try:
        call()
    except cloudfn.RetryLater:
        return "retry"
    parked = dict(box.parked)
    return f"dead: {parked[event.id]}" if event.id in parked else "delivered"


def via_pubsub(svc: Services, pipe: Pipeline, event: Event, attempt: int = 1) -> str:
    box = DeadLetterBox()
    cloudfn.configure(svc, LocalTokens(None), dead_letters=box, pipeline=pipe)
    return _settled(lambda: cloudfn.on_pubsub(_pubsub(event, attempt), only="release"), box, event)


def via_eventarc(svc: Services, pipe: Pipeline, event: Event) -> str:
    box = DeadLetterBox()
    cloudfn.configure(svc, LocalTokens(None), dead_letters=box, pipeline=pipe)
    return _settled(lambda: cloudfn.on_outbox_written(_written(event)), box, event)


# -- the same outcome everywhere -----------------------------------------------------------------


def test_a_poison_event_is_dead_lettered_with_its_reason_on_every_transport(svc: Services) -> None:
    # Given a job.ended event whose data is not a job's end
    pipe = _pipeline(svc)
    # When each transport delivers it once
    outcomes = {
        "router": via_router(svc, pipe, POISON),
        "pubsub": via_pubsub(svc, pipe, POISON),
        "eventarc": via_eventarc(svc, pipe, POISON),
    }
    # Then each parks it, naming the missing fields, and acknowledges it (no retry)
    for transport, outcome in outcomes.items():
        assert outcome.startswith("dead: event job-ended:poison: bad data"), transport
        assert "job_id: Field required" in outcome, transport
    assert len(set(outcomes.values())) == 1
    assert pipe.counts == {f"{EventType.JOB_ENDED}:dead": 3}


def test_a_failing_event_is_retried_then_dead_on_every_transport(svc: Services) -> None:
    # Given release failing with a transient error
    pipe = _pipeline(svc)
    # When each transport delivers the event for the first time, Then each will retry it
    assert via_router(svc, pipe, FAILING) == "retry (tries 1)"
    assert via_pubsub(svc, pipe, FAILING, attempt=1) == "retry"
    assert via_eventarc(svc, pipe, FAILING) == "retry"
    assert pipe.counts == {f"{EventType.JOB_ENDED}:retry": 3}

    # When it keeps failing until its last try, Then it is dead, with the error as reason
    reason = "dead: Firestore is down (releasing j-fail)"
    for _ in range(MAX_TRIES - 1):
        last = via_router(svc, pipe, FAILING)
    assert last == reason
    assert via_pubsub(svc, pipe, FAILING, attempt=MAX_TRIES) == reason


def test_a_delivered_event_is_acknowledged_and_counted_alike(svc: Services) -> None:
    # Given the real handlers and a task.registered event for a task that does not exist
    pipe = Pipeline(svc)
    unknown = ev.task_registered("t-nope")
    # Then an unknown id is not transient: dead, on both Pub/Sub and the router, not retried
    box = DeadLetterBox()
    cloudfn.configure(svc, LocalTokens(None), dead_letters=box, pipeline=pipe)
    cloudfn.on_pubsub(_pubsub(unknown, 1), only="split")
    svc.store.add_events([unknown])
    Router(pipe, svc.store).drain()
    assert [e for e, _ in box.parked] == [unknown.id]
    assert [e for e, _ in svc.store.dead_events()] == [unknown.id]  # type: ignore[attr-defined]
    assert pipe.counts == {f"{EventType.TASK_REGISTERED}:dead": 2}


def test_an_event_sent_to_the_wrong_function_is_poison(svc: Services) -> None:
    pipe = Pipeline(svc)
    box = DeadLetterBox()
    cloudfn.configure(svc, LocalTokens(None), dead_letters=box, pipeline=pipe)
    cloudfn.on_pubsub(_pubsub(ev.task_registered("t1"), 1), only="sweep")
    ((event_id, reason),) = box.parked
    assert event_id == "task-registered:t1" and "is not for sweep" in reason
