"""Glue between Cloud Functions (functions-framework) and the handlers.

`functions/main.py` declares the entry points in a few lines each; this module decodes what
Google Cloud delivers, once, into skypanda's own events, and calls the same handlers the local
router calls:

- HTTP (`submit`, `dispatch`): the Flask API, restricted to users' or pilots' routes.
- Pub/Sub `google.cloud.pubsub.topic.v1.messagePublished` (`split`, `scale`, `sweep`): the
  message carries the event's data as JSON and its id, type and subject as attributes.
- Firestore `google.cloud.firestore.document.v1.written` (`release`): fired when an outbox
  document (`events/{id}`) is written; its data is protobuf `DocumentEventData`. A `job.ended`
  event is released right there; any other kind is forwarded to its Pub/Sub topic. The trigger
  sits on the outbox record of a job's end, not on the job document: a job document is written
  at least three times (created, claimed, ended) and each write would be a billed invocation,
  against one for its end record.

Services are built once per instance from the environment (`configure` overrides that: tests,
and `skypanda up --backend emulators`, which serves these functions in-process).
"""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from cloudevents.http import CloudEvent
from flask import Flask, Request, Response

from skypanda.adapters.gcp.pubsub_bus import decode_push
from skypanda.api.app import create_app
from skypanda.domain.errors import InvalidInput, SkypandaError
from skypanda.domain.events import Event, EventType
from skypanda.handlers.envelope import to_cloudevent
from skypanda.handlers.routes import ROUTES, Handler
from skypanda.handlers.services import Services

log = logging.getLogger(__name__)

PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
FIRESTORE_WRITTEN = "google.cloud.firestore.document.v1.written"

_state: dict[str, Any] = {}
invocations: Counter[str] = Counter()
"""Entry-point invocations in this process, by kind (`http`, `pubsub`, `firestore`): what
Cloud Functions bills per call. Read by `skypanda bench cost`."""


def configure(svc: Services, token: str, forward: Callable[[Event], None] | None = None) -> None:
    """Use these services (and this API token) for every entry point in this process.

    `forward` publishes an event that `release` does not handle itself (default: `svc.bus`)."""
    _state.clear()
    _state.update(svc=svc, token=token, forward=forward or (lambda e: svc.bus.publish([e])))


def services() -> Services:
    if "svc" not in _state:
        from skypanda.adapters.gcp.wiring import services_from_env

        svc, token = services_from_env()
        configure(svc, token)
    return _state["svc"]  # type: ignore[no-any-return]


def _app(parts: tuple[str, ...]) -> Flask:
    key = f"app:{','.join(parts)}"
    if key not in _state:
        svc = services()
        _state[key] = create_app(svc, _state["token"], parts)
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
        InvalidInput: not a Pub/Sub CloudEvent, or the message lacks skypanda's attributes.
    """
    if cloud_event["type"] != PUBSUB_PUBLISHED:
        raise InvalidInput(f"expected a {PUBSUB_PUBLISHED} CloudEvent, got {cloud_event['type']}")
    message = (cloud_event.get_data() or {}).get("message") or {}
    attributes = message.get("attributes") or {}
    if "type" not in attributes:
        # Cloud Scheduler publishes ticks with no attributes of ours: such a message is a tick.
        msg_id = message.get("messageId") or cloud_event["id"]
        return Event(id=f"tick:{msg_id}", type=EventType.TICK, subject="ticks")
    return decode_push({"message": message})


def _run(handlers: tuple[Handler, ...], event: Event) -> None:
    svc = services()
    cloud_event = to_cloudevent(event)
    for handler in handlers:
        handler(svc, cloud_event)


def on_pubsub(cloud_event: Any, handler: Handler) -> None:
    """A Pub/Sub-triggered entry point. Poison messages are logged and acknowledged (returning
    normally acks them; raising would make Pub/Sub redeliver until the dead-letter topic)."""
    invocations["pubsub"] += 1
    try:
        event = event_from_pubsub(cloud_event)
    except InvalidInput as e:
        log.error("dropping message: %s", e.message)
        return
    try:
        _run((handler,), event)
    except SkypandaError as e:
        if e.retryable:
            raise  # Pub/Sub redelivers with backoff
        log.error("event %s: %s", event.id, e.message)


def event_from_document(cloud_event: Any) -> Event | None:
    """Our event from a Firestore `written` CloudEvent on an outbox document, or None when the
    write is not the creation of an undelivered event (an update, a delete)."""
    from google.events.cloud.firestore_v1.types import DocumentEventData

    if cloud_event["type"] != FIRESTORE_WRITTEN:
        raise InvalidInput(f"expected a {FIRESTORE_WRITTEN} CloudEvent, got {cloud_event['type']}")
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


def on_outbox_written(cloud_event: Any) -> None:
    """Release a job's end right here; forward any other event to its Pub/Sub topic."""
    invocations["firestore"] += 1
    event = event_from_document(cloud_event)
    if event is None:
        return
    if event.type is EventType.JOB_ENDED:
        _run(ROUTES[EventType.JOB_ENDED], event)
    else:
        services()
        _state["forward"](event)


def cloud_event(attributes: dict[str, str], data: Any) -> CloudEvent:
    """A CloudEvent (for bridges and tests that deliver events as Google Cloud would)."""
    return CloudEvent({"specversion": "1.0", **attributes}, data)
