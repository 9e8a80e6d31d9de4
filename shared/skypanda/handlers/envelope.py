"""CloudEvents in and out: decode once at the boundary into a typed payload.

Locally the router builds these from the outbox; on Google Cloud, functions-framework hands
the same shape to the Cloud Function.
"""

from __future__ import annotations

from typing import Any, TypeVar

from cloudevents.http import CloudEvent
from pydantic import BaseModel, ConfigDict, ValidationError

from skypanda.domain.errors import InvalidInput
from skypanda.domain.events import Event

SOURCE = "//skypanda"

P = TypeVar("P", bound=BaseModel)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TaskRef(_Payload):
    task_id: str


class WorkflowRef(_Payload):
    workflow_id: str


class JobEnded(_Payload):
    job_id: str
    task_id: str
    attempt: int
    status: str


class QueueNudge(_Payload):
    queue: str | None = None


def to_cloudevent(event: Event, source: str = SOURCE) -> CloudEvent:
    attributes = {
        "id": event.id,
        "type": str(event.type),
        "source": source,
        "subject": event.subject,
    }
    return CloudEvent(attributes, event.data)


def decode(cloud_event: Any, model: type[P]) -> P:
    """The event's data as `model`.

    Raises:
        InvalidInput: the data is missing or not of the expected shape (the event is poison:
            redelivering it cannot help).
    """
    data = cloud_event.get_data() if hasattr(cloud_event, "get_data") else cloud_event.data
    try:
        return model.model_validate(data or {})
    except ValidationError as e:
        raise InvalidInput(f"event {cloud_event['id']}: bad data for {model.__name__}: {e}") from e
