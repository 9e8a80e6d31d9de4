"""Glue between Cloud Functions (functions-framework) and the handlers.

`functions/main.py` declares the entry points in a few lines each; this module decodes what
Google Cloud delivers, once, into skypanda's own events, and calls the same handlers the local
router calls:

- HTTP (`submit`, `dispatch`): the Flask API, restricted to users' or pilots' routes.
- Pub/Sub `google.cloud.pubsub.topic.v1.messagePublished` (`split`, `scale`, `sweep`): the
  message carries the event's data as JSON and its id, type and subject as attributes.
  A tick (Cloud Scheduler) carries only the attribute `type=dev.skypanda.tick`; a message
  with no type is no tick: it is dead-lettered with that reason.
- Pub/Sub on the submission topic (`intake`, `on_submission`): another pipeline's task or
  workflow (`runtime.intake` decodes it and verifies its credential).
- Pub/Sub on the object topic (`watch`, `on_object_finalized`): Cloud Storage's notifications
  (`runtime.objects`) as well as our own object.finalized events.
- Firestore `google.cloud.firestore.document.v1.created` (`release`): fired when an outbox
  document (`events/{id}`) is created (`written` is understood too: its updates and deletes
  are skipped); its data is protobuf `DocumentEventData`. A `job.ended`
  event is released right there; any other kind is forwarded to its Pub/Sub topic. The trigger
  sits on the outbox record of a job's end, not on the job document: a job document is written
  at least three times (created, claimed, ended) and each write would be a billed invocation,
  against one for its end record.

Every event that came from the outbox is marked handled once its handlers are done (DELIVERED
or DEAD), and TTL deletes it later; the sweep sends again the ones never marked (a lost
delivery), on their Pub/Sub topic, `job.ended` included (its subscription feeds `release`).

Every event goes through the one pipeline (`handlers.pipeline`), with its outcome mapped onto
what Google Cloud understands: DELIVERED returns (acknowledged), RETRY raises (Pub/Sub and
Eventarc redeliver with backoff), DEAD publishes the message, with its reason, to the
dead-letter topic and returns (acknowledged: a poison event stops costing invocations).

Services are built once per instance from the environment (`configure` overrides that: tests,
and `skypanda up --backend emulators`, which serves these functions in-process).
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from cloudevents.http import CloudEvent
from flask import Flask, Request, Response

from skypanda.adapters.gcp.pubsub_bus import decode_push, encode_message
from skypanda.api.app import create_app
from skypanda.api.audit import trusted_proxies_from_env
from skypanda.domain import events as ev
from skypanda.domain.errors import InvalidInput, SkypandaError
from skypanda.domain.events import Event, EventType
from skypanda.handlers.pipeline import Outcome, Pipeline, Result
from skypanda.handlers.services import Services
from skypanda.ports import Identity
from skypanda.runtime.intake import decode_submission, public_attributes
from skypanda.runtime.objects import decode_notification, is_notification
from skypanda.wire import logs

log = logging.getLogger(__name__)

PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
FIRESTORE_WRITTEN = "google.cloud.firestore.document.v1.written"
FIRESTORE_CREATED = "google.cloud.firestore.document.v1.created"

_state: dict[str, Any] = {}
invocations: Counter[str] = Counter()
"""Entry-point invocations in this process, by kind (`http`, `pubsub`, `firestore`): what
Cloud Functions bills per call. Read by `skypanda bench cost`."""


class DeadLetters(Protocol):
    def dead_letter(
        self, event_id: str, data: bytes, attributes: Mapping[str, str], reason: str
    ) -> None: ...


class Rejections(Protocol):
    def publish_rejection(self, key: str, reason: str, owner: str = "") -> str: ...


class RetryLater(Exception):
    """Raised out of an entry point so that Pub/Sub or Eventarc delivers the event again."""


def configure(
    svc: Services,
    identity: Identity,
    forward: Callable[[Event], None] | None = None,
    dead_letters: DeadLetters | None = None,
    pipeline: Pipeline | None = None,
    rejections: Rejections | None = None,
) -> None:
    """Use these services (and this identity) for every entry point in this process.

    `forward` publishes an event that `release` does not handle itself (default: `svc.bus`);
    `dead_letters` parks dead events (default: `svc.bus`, a PubSubBus); `pipeline` delivers
    events (default: one over `svc` with the routing table); `rejections` tells publishers
    their submission was refused (default: `svc.bus`, a PubSubBus)."""
    _state.clear()
    _state.update(
        svc=svc,
        identity=identity,
        pipeline=pipeline or Pipeline(svc),
        forward=forward or (lambda e: svc.bus.publish([e])),
        dead_letters=dead_letters or svc.bus,
        rejections=rejections or svc.bus,
    )


def services() -> Services:
    if "svc" not in _state:
        from skypanda.runtime.gcp import project_id, services_from_env

        svc, identity = services_from_env()
        configure(svc, identity)
        logs.set_project(project_id())  # qualifies the requests' trace ids
    return _state["svc"]  # type: ignore[no-any-return]


def pipeline() -> Pipeline:
    services()
    return _state["pipeline"]  # type: ignore[no-any-return]


def _app(parts: tuple[str, ...]) -> Flask:
    key = f"app:{','.join(parts)}"
    if key not in _state:
        svc = services()
        # Google's front end is one proxy in front of every function: believe its hop.
        proxies = trusted_proxies_from_env(1)
        _state[key] = create_app(svc, _state["identity"], parts, trusted_proxies=proxies)
    return _state[key]  # type: ignore[no-any-return]


def serve_http(request: Request, parts: tuple[str, ...]) -> Response:
    """Answer one HTTP request with the API (auth, JSON errors and all)."""
    invocations["http"] += 1
    app = _app(parts)
    # The body is read once here (functions-framework reads it again after we return), and the
    # inner app gets its own copy of the stream.
    body = request.get_data()
    environ = {**request.environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
    with app.request_context(environ):
        return app.full_dispatch_request()


def event_from_pubsub(cloud_event: Any) -> Event:
    """Our event from a Pub/Sub messagePublished CloudEvent.

    Raises:
        InvalidInput: not a Pub/Sub CloudEvent, or the message lacks skypanda's attributes
            (a message without a `type` is no tick: it is dead-lettered with that reason).
    """
    if cloud_event["type"] != PUBSUB_PUBLISHED:
        raise InvalidInput(f"expected a {PUBSUB_PUBLISHED} CloudEvent, got {cloud_event['type']}")
    message = _message(cloud_event)
    attributes = message.get("attributes") or {}
    kind = attributes.get("type") if isinstance(attributes, dict) else None
    if kind == EventType.TICK and "event_id" not in attributes:
        # Cloud Scheduler's tick carries only `type` (infra/terraform/scheduler.tf): its id is
        # the message's.
        return ev.tick(str(message.get("messageId") or cloud_event["id"]))
    if kind is None:
        raise InvalidInput(
            f"message has no type attribute (a tick carries type={EventType.TICK}; a submission "
            "goes to the submission topic)"
        )
    return decode_push({"message": message})


def _message(cloud_event: Any) -> dict[str, Any]:
    data = cloud_event.get_data()
    message = data.get("message") if isinstance(data, dict) else None
    return message if isinstance(message, dict) else {}


def _unpack(cloud_event: Any) -> tuple[dict[str, Any], str, bytes, dict[str, str]]:
    """A Pub/Sub CloudEvent's message, its id, its data (decoded; empty when not base64) and
    its attributes (as strings)."""
    message = _message(cloud_event)
    raw_id = str(message.get("messageId") or cloud_event["id"])
    try:
        data = base64.b64decode(message.get("data") or "")
    except (ValueError, TypeError):
        data = b""
    attributes = {str(k): str(v) for k, v in (message.get("attributes") or {}).items()}
    return message, raw_id, data, attributes


def _tries(message: Mapping[str, Any]) -> int:
    """Failed deliveries before this one: Pub/Sub counts attempts when a subscription has a
    dead-letter policy (ours all have); 0 when it does not say."""
    try:
        return max(0, int(message.get("deliveryAttempt") or 1) - 1)
    except (TypeError, ValueError):
        return 0


def _settle(result: Result, event_id: str, data: bytes, attributes: Mapping[str, str]) -> None:
    """Map the pipeline's outcome onto the transport: return (ack), raise (redeliver), or
    dead-letter then return."""
    if result.outcome is Outcome.RETRY:
        raise RetryLater(f"event {event_id}: {result.reason}")
    if result.outcome is Outcome.DEAD:
        _state["dead_letters"].dead_letter(event_id, data, attributes, result.reason)


def on_pubsub(cloud_event: Any, *, only: str, transport: str = "pubsub") -> None:
    """A Pub/Sub-triggered entry point: the message's event through the pipeline, to the
    handler `only` (the one its subscription feeds)."""
    invocations["pubsub"] += 1
    pipe = pipeline()
    message, raw_id, data, attributes = _unpack(cloud_event)
    try:
        event = event_from_pubsub(cloud_event)
    except InvalidInput as e:
        _settle(pipe.poison(raw_id, e.message, transport), raw_id, data, attributes)
        return
    result = pipe.deliver(event, tries=_tries(message), transport=transport, only=only)
    _settle(result, event.id, data, attributes)
    if event.type is not EventType.TICK:  # ticks come from Cloud Scheduler, not the outbox
        _handled(event)


def on_submission(cloud_event: Any) -> None:
    """The `intake` function: a message on the submission topic (`runtime.intake`) decoded,
    its credential verified, and delivered to `intake`. A submission that is refused (at
    decoding, by the handler, or out of tries) is dead-lettered with its reason (without its
    credential) and a rejection with the key and the reason goes back to the publisher."""
    invocations["pubsub"] += 1
    pipe = pipeline()
    message, raw_id, data, attributes = _unpack(cloud_event)
    public = public_attributes(attributes)
    try:
        event = decode_submission(raw_id, data, attributes, _state["identity"])
    except SkypandaError as e:
        if e.retryable:
            raise RetryLater(f"submission {raw_id}: {e.message}") from e
        key = str(e.context.get("key") or attributes.get("key", ""))[:200]
        result = pipe.poison(raw_id, e.message, "pubsub", kind=EventType.SUBMISSION)
        _refuse(result, raw_id, data, public, key, str(e.context.get("owner") or ""))
        return
    result = pipe.deliver(event, tries=_tries(message), transport="pubsub", only="intake")
    _refuse(result, event.id, data, public, event.data["key"], event.data["owner"])


def _refuse(
    result: Result, event_id: str, data: bytes, attributes: Mapping[str, str], key: str, owner: str
) -> None:
    """`_settle`, and for a dead submission first the rejection to its publisher (a failure to
    publish it raises: the message comes again, and is refused again)."""
    if result.outcome is Outcome.DEAD:
        try:
            _state["rejections"].publish_rejection(key, result.reason, owner)
        except SkypandaError as e:
            raise RetryLater(f"submission {event_id}: rejection not published: {e.message}") from e
    _settle(result, event_id, data, attributes)


def on_object_finalized(cloud_event: Any) -> None:
    """The `watch` function: a Cloud Storage notification (`runtime.objects`: a finalize is
    delivered to `watch`, any other kind acknowledged and ignored), or an object.finalized
    event of ours (a watched folder's or bucket's poller, through the outbox)."""
    message, raw_id, data, attributes = _unpack(cloud_event)
    if not is_notification(attributes):
        on_pubsub(cloud_event, only="watch")
        return
    invocations["pubsub"] += 1
    pipe = pipeline()
    try:
        event = decode_notification(attributes, data)
    except InvalidInput as e:
        _settle(pipe.poison(raw_id, e.message, "pubsub"), raw_id, data, attributes)
        return
    if event is not None:
        result = pipe.deliver(event, tries=_tries(message), transport="pubsub", only="watch")
        _settle(result, event.id, data, attributes)


def _handled(event: Event) -> None:
    """Mark an outbox event handled. A failure is only logged: the event was handled, and the
    sweep's re-send of an unmarked one changes nothing (handlers are idempotent)."""
    svc = services()
    try:
        svc.outbox.mark_handled([event.id], svc.clock.now())
    except SkypandaError as e:
        log.warning("event %s handled but not marked so: %s", event.id, e.message)


def event_from_document(cloud_event: Any) -> Event | None:
    """Our event from a Firestore `written` CloudEvent on an outbox document, or None when the
    write is not the creation of an undelivered event (an update, a delete).

    Raises:
        InvalidInput: not such a CloudEvent, or the document is not a skypanda event.
    """
    from google.events.cloud.firestore_v1.types import DocumentEventData

    if cloud_event["type"] not in (FIRESTORE_CREATED, FIRESTORE_WRITTEN):
        raise InvalidInput(f"expected a {FIRESTORE_CREATED} CloudEvent, got {cloud_event['type']}")
    raw = cloud_event.get_data()
    try:
        payload = DocumentEventData.deserialize(
            raw if isinstance(raw, bytes) else bytes(raw or b"")
        )
    except Exception as e:  # protobuf raises its own DecodeError types
        raise InvalidInput(f"event {cloud_event['id']}: data is not DocumentEventData: {e}") from e
    if not payload.value or payload.old_value:  # deleted, or updated (e.g. marked delivered)
        return None
    fields = payload.value.fields
    try:
        return Event(
            id=payload.value.name.rsplit("/", 1)[-1],
            type=EventType(fields["type"].string_value),
            subject=fields["subject"].string_value,
            data=json.loads(fields["data"].string_value or "{}"),
        )
    except (KeyError, ValueError) as e:
        raise InvalidInput(
            f"outbox document {payload.value.name}: not a skypanda event: {e}"
        ) from e


def on_release(cloud_event: Any) -> None:
    """The `release` function: an outbox document created (Eventarc), or a lost `job.ended`
    the sweep sent again (Pub/Sub)."""
    if cloud_event["type"] == PUBSUB_PUBLISHED:
        on_pubsub(cloud_event, only="release")
    else:
        on_outbox_written(cloud_event)


def on_outbox_written(cloud_event: Any) -> None:
    """Release a job's end right here (through the pipeline); forward any other event to its
    Pub/Sub topic (marked handled where it is delivered)."""
    invocations["firestore"] += 1
    pipe = pipeline()
    raw = cloud_event.get_data()
    body = raw if isinstance(raw, bytes) else json.dumps(raw, default=str).encode()
    try:
        event = event_from_document(cloud_event)
    except InvalidInput as e:
        raw_id = str(cloud_event["id"])
        _settle(pipe.poison(raw_id, e.message, "eventarc"), raw_id, body, {"source": "outbox"})
        return
    if event is None:
        return
    if event.type is not EventType.JOB_ENDED:
        try:
            _state["forward"](event)
        except SkypandaError as e:  # Pub/Sub refused: let Eventarc deliver the document again
            raise RetryLater(f"event {event.id}: could not forward: {e.message}") from e
        return
    data, attributes = encode_message(event)  # as it would travel on Pub/Sub
    _settle(pipe.deliver(event, transport="eventarc"), event.id, data, attributes)
    _handled(event)


def cloud_event(attributes: dict[str, str], data: Any) -> CloudEvent:
    """A CloudEvent (for bridges and tests that deliver events as Google Cloud would)."""
    return CloudEvent({"specversion": "1.0", **attributes}, data)
