"""Notifications: what skypanda tells the world when a task or a workflow ends.

A notification is a CloudEvent (specversion 1.0) whose `data` is a typed, versioned payload,
`Notification` (version 1). It is published to the notifications topic on Google Cloud and
POSTed to webhooks (binary mode: the `ce-*` headers carry the envelope, the body is the data).
`NotificationCloudEvent` is the structured form; its JSON Schema is the repository's
`schemas/notification.v1.json` (`notification_schema()`, checked for staleness by a test).

A new field with a default is a compatible change (version stays 1); removing or retyping a
field makes version 2, with a new schema file, while version 1 keeps being sent for a while.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from skypanda.domain.events import EventType

SPEC_VERSION = "1.0"
SCHEMA_FILE = "schemas/notification.v1.json"
DATASCHEMA = f"https://skypanda.dev/{SCHEMA_FILE}"
"""The CloudEvent's `dataschema`: the `$id` of the repository's schema file."""
MAX_URL_CHARS = 2048
MAX_REASON_CHARS = 1000
MAX_NOTIFY_URLS = 5
"""Webhook URLs a task or a workflow may name (`notify:`)."""


def check_webhook_url(url: str) -> str:
    """A URL a webhook may have: http or https, with a host, no credentials, not too long.

    Raises:
        ValueError: it is not (pydantic makes it an error naming the field).
    """
    from urllib.parse import urlsplit  # pure parsing, no I/O

    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"a webhook URL has at most {MAX_URL_CHARS} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"a webhook URL is http:// or https://, not {parts.scheme or 'none'}")
    if not parts.hostname:
        raise ValueError("a webhook URL names a host")
    if parts.username or parts.password:
        raise ValueError("a webhook URL carries no credentials (requests are signed instead)")
    if is_metadata_host(parts.hostname):
        raise ValueError(f"a webhook URL may not name {parts.hostname}: a link-local address")
    return url


METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "metadata.goog"})


def is_metadata_host(host: str) -> bool:
    """Whether `host` is a cloud metadata server or another link-local address (169.254.0.0/16,
    fe80::/10): a webhook there would let a user make the server call its own metadata
    server. Loopback and private networks stay allowed (local receivers, on-site pipelines)."""
    import ipaddress

    if host.lower().rstrip(".") in METADATA_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_link_local
    except ValueError:
        return False


WebhookUrl = Annotated[str, AfterValidator(check_webhook_url)]


class Notification(BaseModel):
    """The data of a notification, version 1: a task or a workflow ended."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="skypanda notification v1",
        json_schema_serialization_defaults_required=True,
    )

    version: Literal[1] = 1
    kind: Literal["task", "workflow"]
    id: str = Field(min_length=1, description="the task's or workflow's id")
    name: str
    owner: str
    status: str = Field(description="the end status (done, finished, failed, aborted, ...)")
    reason: str = Field(default="", max_length=MAX_REASON_CHARS)
    workflow_id: str | None = Field(default=None, description="a task's workflow, if any")
    job_counts: dict[str, int] = Field(
        default_factory=dict, description="its jobs (a workflow: all its tasks' jobs) by status"
    )
    task_counts: dict[str, int] = Field(
        default_factory=dict, description="a workflow's tasks by status (empty for a task)"
    )
    created_at: float = Field(description="when it was submitted, seconds since the epoch")
    ended_at: float = Field(description="when it ended, seconds since the epoch")
    path: str = Field(description="the API path of it, e.g. /v1/tasks/<id>")


class NotificationCloudEvent(BaseModel):
    """A notification as a structured-mode CloudEvent (what the schema file describes)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="skypanda notification (CloudEvent)",
        json_schema_serialization_defaults_required=True,
        json_schema_extra={"$id": DATASCHEMA},
    )

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: Literal["dev.skypanda.task.ended", "dev.skypanda.workflow.ended"]
    subject: str = Field(min_length=1)
    time: str = Field(description="RFC 3339, UTC")
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str = DATASCHEMA
    data: Notification

    def body(self) -> bytes:
        """The HTTP body in binary mode (and a Pub/Sub message's data): the data as JSON."""
        return self.data.model_dump_json().encode("utf-8")

    def headers(self) -> dict[str, str]:
        """The CloudEvents HTTP binary-mode headers (`ce-*`, and the content type)."""
        return {
            "ce-specversion": self.specversion,
            "ce-id": self.id,
            "ce-source": self.source,
            "ce-type": self.type,
            "ce-subject": self.subject,
            "ce-time": self.time,
            "ce-dataschema": self.dataschema,
            "Content-Type": self.datacontenttype,
        }

    def attributes(self) -> dict[str, str]:
        """Pub/Sub attributes: the envelope (`ce-*`, the Pub/Sub binding of CloudEvents) and,
        for subscription filters, type, owner, task_id, workflow_id and status (empty ones
        left out: filter with `hasPrefix` or `attributes:workflow_id`)."""
        d = self.data
        task_id = d.id if d.kind == "task" else ""
        filters = {
            "type": self.type,
            "owner": d.owner,
            "task_id": task_id,
            "workflow_id": d.id if d.kind == "workflow" else (d.workflow_id or ""),
            "status": d.status,
        }
        ce = {k.removeprefix("ce-"): v for k, v in self.headers().items() if k.startswith("ce-")}
        return {**{f"ce-{k}": v for k, v in ce.items()}, **{k: v for k, v in filters.items() if v}}


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cloud_event(event_id: str, source: str, data: Notification) -> NotificationCloudEvent:
    """The CloudEvent of `data`; its id is the end event's id (one per end: a receiver
    recognises a repeated delivery by it)."""
    kind = EventType.TASK_ENDED if data.kind == "task" else EventType.WORKFLOW_ENDED
    return NotificationCloudEvent(
        id=event_id,
        source=source,
        type=kind.value,
        subject=f"{data.kind}s/{data.id}",
        time=rfc3339(data.ended_at),
        data=data,
    )


def notification_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of `NotificationCloudEvent` as sent (every field with a
    default is always present, so required): the schema file's content."""
    schema = NotificationCloudEvent.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_text() -> str:
    """The schema file's text (`schemas/notification.v1.json`)."""
    return json.dumps(notification_schema(), indent=2, sort_keys=True) + "\n"
