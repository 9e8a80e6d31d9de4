"""The Pub/Sub Bus: each event becomes one message on its type's topic (see topology.py).

A message carries the event's `data` as JSON and its envelope as attributes:

    data        json.dumps(event.data), utf-8
    attributes  event_id   the event's id: a subscriber recognises a redelivery by it
                type       the EventType value (dev.skypanda.task.registered, ...)
                subject    the event's subject (tasks/<id>, jobs/<id>, ...)

so the receiving side rebuilds the same Event, and from it the same CloudEvent
(`handlers.envelope.to_cloudevent`) the local router would have delivered: `decode_message`
for pulled messages, `decode_push` for a push request's JSON body (the same body a Cloud
Function triggered by the topic finds in its CloudEvent's data).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions as gexc

from skypanda.adapters.gcp.topology import (
    dead_letter_topic_name,
    notifications_topic_name,
    topic_name,
)
from skypanda.domain.errors import BackendUnavailable, InvalidInput
from skypanda.domain.events import Event, EventType

__all__ = ["REJECTED", "PubSubBus", "decode_message", "decode_push", "encode_message"]

PUBLISH_TIMEOUT_S = 30.0
REJECTED = "dev.skypanda.submission.rejected"
"""The CloudEvent type telling a publisher its submission was refused (`publish_rejection`)."""


class PubSubBus:
    """Bus port on Pub/Sub.

    Args:
        publisher: a `google.cloud.pubsub_v1.PublisherClient` (it stays the caller's to stop).
        project: the Google Cloud project of the topics.
        prefix: the topology's prefix (see `topology.topic_name`).
        timeout: seconds to wait for Pub/Sub to accept a batch of events.

    Attributes:
        published: how many messages Pub/Sub has accepted from this bus (to measure cost).
    """

    def __init__(
        self,
        publisher: Any,
        project: str,
        *,
        prefix: str = "skypanda",
        timeout: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        self._publisher = publisher
        self._project = project
        self._prefix = prefix
        self._timeout = timeout
        self._lock = threading.Lock()
        self.published = 0

    def publish(self, events: Sequence[Event]) -> None:
        """Publish every event and wait until Pub/Sub has accepted them all.

        Events are sent together (the client batches them) and awaited together. On failure
        some may have been published: publishing again is safe, as subscribers recognise a
        repeated event by its id.

        Raises:
            InvalidInput: an event's data is not JSON-serialisable.
            BackendUnavailable: Pub/Sub did not accept some event (a missing topic included:
                run `ensure_topology`).
        """
        pending: list[tuple[Event, Future[str]]] = []
        for event in events:
            topic = self._publisher.topic_path(self._project, topic_name(event.type, self._prefix))
            data, attrs = encode_message(event)
            try:
                pending.append((event, self._publisher.publish(topic, data, **attrs)))
            except gexc.GoogleAPIError as e:
                raise BackendUnavailable(f"could not publish event {event.id}: {e}") from e
        failed: list[tuple[Event, BaseException]] = []
        for event, future in pending:
            try:
                future.result(timeout=self._timeout)
            except (gexc.GoogleAPIError, TimeoutError) as e:
                failed.append((event, e))
            else:
                with self._lock:
                    self.published += 1
        if failed:
            event, error = failed[0]
            raise BackendUnavailable(
                f"Pub/Sub did not accept {len(failed)} of {len(pending)} events "
                f"(first: {event.id} on {topic_name(event.type, self._prefix)}: {error})",
                event_ids=[e.id for e, _ in failed],
            ) from error

    def dead_letter(
        self, event_id: str, data: bytes, attributes: Mapping[str, str], reason: str
    ) -> None:
        """Park a message on the dead-letter topic with why (attribute `dead_reason`), as
        received (`data`, `attributes`): the pipeline found it poison, or out of tries.

        Raises:
            BackendUnavailable: Pub/Sub did not accept it (the caller lets the transport
                redeliver, so the message is not lost).
        """
        topic = self._publisher.topic_path(self._project, dead_letter_topic_name(self._prefix))
        attrs = {**{k: str(v) for k, v in attributes.items()}, "dead_reason": reason[:1000]}
        attrs.setdefault("event_id", event_id)
        try:
            self._publisher.publish(topic, data, **attrs).result(timeout=self._timeout)
        except (gexc.GoogleAPIError, TimeoutError) as e:
            raise BackendUnavailable(f"could not dead-letter event {event_id}: {e}") from e

    def publish_rejection(self, key: str, reason: str, owner: str = "") -> str:
        """Tell a publisher its submission was refused: a CloudEvent-shaped message on the
        notifications topic, attributes `type` (dev.skypanda.submission.rejected), `key` and,
        when known, `owner` (to filter on); data the CloudEvent in JSON (specversion, id,
        source, type, time, data {key, owner, reason}). Its id derives from the key and the
        reason: a redelivered rejection is recognisably the same. Returns the message id.

        Raises:
            BackendUnavailable: Pub/Sub did not accept it.
        """
        kind = REJECTED
        digest = hashlib.sha256(f"{key}\0{owner}\0{reason}".encode()).hexdigest()[:24]
        body = {
            "specversion": "1.0", "id": f"rejected:{digest}", "source": "//skypanda/intake",
            "type": kind, "subject": f"submissions/{key}",
            "time": datetime.now(UTC).isoformat(), "datacontenttype": "application/json",
            "data": {"key": key, "owner": owner, "reason": reason},
        }  # fmt: skip
        attrs = {
            "type": kind,
            **({"key": key} if key else {}),
            **({"owner": owner} if owner else {}),
        }
        topic = self._publisher.topic_path(self._project, notifications_topic_name(self._prefix))
        data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        try:
            return str(self._publisher.publish(topic, data, **attrs).result(timeout=self._timeout))
        except (gexc.GoogleAPIError, TimeoutError) as e:
            raise BackendUnavailable(f"could not publish the rejection of {key}: {e}") from e


def decode_message(message_data: bytes, attributes: Mapping[str, str]) -> Event:
    """The Event a PubSubBus message carries.

    Raises:
        InvalidInput: the message was not made by PubSubBus (missing attribute, unknown
            type, data not a JSON object): redelivering it cannot help.
    """
    missing = [a for a in ("event_id", "type", "subject") if a not in attributes]
    if missing:
        raise InvalidInput(f"message lacks attributes {missing}", attributes=dict(attributes))
    event_id = attributes["event_id"]
    try:
        event_type = EventType(attributes["type"])
    except ValueError as e:
        raise InvalidInput(f"event {event_id}: unknown type {attributes['type']!r}") from e
    try:
        data = json.loads(message_data.decode("utf-8")) if message_data else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidInput(f"event {event_id}: data is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise InvalidInput(f"event {event_id}: data is not a JSON object")
    return Event(id=event_id, type=event_type, subject=attributes["subject"], data=data)


def decode_push(body: Mapping[str, Any]) -> Event:
    """The Event in a push request's body (`{"message": {"data": base64, "attributes": ...}}`).

    Raises:
        InvalidInput: not a push body carrying a PubSubBus message.
    """
    message = body.get("message")
    if not isinstance(message, Mapping):
        raise InvalidInput("push body has no 'message' object")
    try:
        data = base64.b64decode(message.get("data") or "", validate=True)
    except (binascii.Error, TypeError) as e:
        raise InvalidInput(f"push message data is not base64: {e}") from e
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        raise InvalidInput("push message attributes are not an object")
    return decode_message(data, attributes)


def encode_message(event: Event) -> tuple[bytes, dict[str, str]]:
    """The data and attributes of the message carrying `event` (see the module docstring).

    Raises:
        InvalidInput: the event's data is not JSON-serialisable.
    """
    return _encode(event), _attrs(event)


def _encode(event: Event) -> bytes:
    try:
        return json.dumps(event.data, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"event {event.id}: data is not JSON-serialisable: {e}") from e


def _attrs(event: Event) -> dict[str, str]:
    return {"event_id": event.id, "type": str(event.type), "subject": event.subject}
