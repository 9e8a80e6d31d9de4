"""Notifications: what skypanda tells the world when a task or a workflow ends (and, opted in
with `notify_on:`, each of its jobs' ends and each change of its status).

A notification is a CloudEvent (specversion 1.0) whose `data` is a typed, versioned payload of
one of three kinds, told apart by `data.kind` and by the CloudEvent `type`:

    kind                      type                            data
    task, workflow            dev.skypanda.{task,workflow}.ended    `Notification`
    job                       dev.skypanda.job.ended                `JobEndNotification`
    task_state, workflow_state  dev.skypanda.{task,workflow}.changed `StateNotification`

It is published to the notifications topic on Google Cloud and POSTed to webhooks (binary
mode: the `ce-*` headers carry the envelope, the body is the data). `NotificationCloudEvent`
is the structured form; its JSON Schema is the repository's `schemas/notification.v1.json`
(`notification_schema()`, checked for staleness by a test).

A new field with a default, or a new kind, is a compatible change (version stays 1): every
message valid before stays valid, and a consumer that filters on `type` (or `kind`) never
sees a kind it does not know unless a task opted in to it. The job and state kinds were added
that way: the end payload is unchanged, `data` became a choice (`oneOf`) of the three. Removing
or retyping a field makes version 2, with a new schema file, while version 1 keeps being sent
for a while.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

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


class NotifyOn(StrEnum):
    """What a task or a workflow is notified of (`notify_on:`)."""

    END = "end"  # its end (the default)
    JOB_END = "job_end"  # each end of one of its jobs (a workflow: of its tasks' jobs)
    STATE = "state"  # each change of its status (a workflow: of its tasks' too)


DEFAULT_NOTIFY_ON: tuple[NotifyOn, ...] = (NotifyOn.END,)


def _each_once(values: list[NotifyOn]) -> list[NotifyOn]:
    return list(dict.fromkeys(values))


NotifyOnList = Annotated[
    list[NotifyOn],
    Field(max_length=len(NotifyOn) * 2),
    AfterValidator(_each_once),
]
"""`notify_on:`: a list of `end`, `job_end`, `state` (an unknown value is an error naming it);
empty: nothing is notified about it, not even its end."""


def notified(own: Iterable[NotifyOn], workflow: Iterable[NotifyOn] = ()) -> frozenset[NotifyOn]:
    """What is notified about a task: its own `notify_on`, and the job ends and state changes
    its workflow's `notify_on` opts in to (a task's end stays the task's own choice). A pure
    decision over specs that never change."""
    return frozenset(own) | (frozenset(workflow) - {NotifyOn.END})


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


class JobEndNotification(BaseModel):
    """The data of a job-end notification (version 1): one job of an opted-in task ended
    (`notify_on: [job_end]`). A job whose attempt failed and is retried has not ended: its
    last attempt's end is the one told."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="skypanda job end notification v1",
        json_schema_serialization_defaults_required=True,
    )

    version: Literal[1] = 1
    kind: Literal["job"]
    id: str = Field(min_length=1, description="the job's id")
    task_id: str = Field(min_length=1)
    workflow_id: str | None = Field(default=None, description="its task's workflow, if any")
    name: str = Field(description="its task's name")
    owner: str
    index: int = Field(ge=0, description="its place in its task")
    status: str = Field(description="the end status (finished, failed, cancelled, closed)")
    attempt: int = Field(ge=1)
    max_attempts: int = Field(ge=1)
    exit_code: int | None = None
    error_code: int | None = None
    diagnosis: str = Field(default="", max_length=MAX_REASON_CHARS)
    log_uri: str | None = None
    pilot_id: str | None = None
    started_at: float | None = None
    ended_at: float = Field(description="when it ended, seconds since the epoch")
    path: str = Field(description="the API path of it, /v1/jobs/<id>")


class StateNotification(BaseModel):
    """The data of a state-change notification (version 1): an opted-in task or workflow
    (`notify_on: [state]`) moved from `previous` to `status` (its end included)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="skypanda state change notification v1",
        json_schema_serialization_defaults_required=True,
    )

    version: Literal[1] = 1
    kind: Literal["task_state", "workflow_state"]
    id: str = Field(min_length=1, description="the task's or workflow's id")
    name: str
    owner: str
    workflow_id: str | None = Field(default=None, description="a task's workflow, if any")
    previous: str = Field(description="the status it left")
    status: str = Field(description="the status it entered")
    reason: str = Field(default="", max_length=MAX_REASON_CHARS)
    at: float = Field(description="when it changed, seconds since the epoch")
    path: str = Field(description="the API path of it, e.g. /v1/tasks/<id>")


NotificationData = Annotated[
    Notification | JobEndNotification | StateNotification, Field(discriminator="kind")
]
NOTIFICATION_TYPES: dict[str, str] = {
    "task": EventType.TASK_ENDED.value,
    "workflow": EventType.WORKFLOW_ENDED.value,
    "job": EventType.JOB_ENDED.value,
    "task_state": EventType.TASK_CHANGED.value,
    "workflow_state": EventType.WORKFLOW_CHANGED.value,
}
"""The CloudEvent `type` of each kind of data."""


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
    type: Literal[
        "dev.skypanda.task.ended",
        "dev.skypanda.workflow.ended",
        "dev.skypanda.job.ended",
        "dev.skypanda.task.changed",
        "dev.skypanda.workflow.changed",
    ]
    subject: str = Field(min_length=1)
    time: str = Field(description="RFC 3339, UTC")
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str = DATASCHEMA
    data: NotificationData

    @model_validator(mode="after")
    def _type_fits_data(self) -> NotificationCloudEvent:
        if NOTIFICATION_TYPES[self.data.kind] != self.type:
            raise ValueError(f"a {self.data.kind} notification has type "
                             f"{NOTIFICATION_TYPES[self.data.kind]}, not {self.type}")  # fmt: skip
        return self

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
        for subscription filters, type, kind, owner, task_id, workflow_id, job_id and status
        (empty ones left out: filter with `hasPrefix` or `attributes:workflow_id`)."""
        d = self.data
        if isinstance(d, JobEndNotification):
            task_id, workflow_id, job_id = d.task_id, d.workflow_id or "", d.id
        elif d.kind in ("task", "task_state"):
            task_id, workflow_id, job_id = d.id, d.workflow_id or "", ""
        else:
            task_id, workflow_id, job_id = "", d.id, ""
        filters = {
            "type": self.type,
            "kind": d.kind,
            "owner": d.owner,
            "task_id": task_id,
            "workflow_id": workflow_id,
            "job_id": job_id,
            "status": d.status,
        }
        ce = {k.removeprefix("ce-"): v for k, v in self.headers().items() if k.startswith("ce-")}
        return {**{f"ce-{k}": v for k, v in ce.items()}, **{k: v for k, v in filters.items() if v}}


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cloud_event(
    event_id: str, source: str, data: Notification | JobEndNotification | StateNotification
) -> NotificationCloudEvent:
    """The CloudEvent of `data`; its id is the id of the event it tells (one per end or
    change: a receiver recognises a repeated delivery by it)."""
    if isinstance(data, StateNotification):
        subject, at = f"{data.kind.removesuffix('_state')}s/{data.id}", data.at
    else:
        subject, at = f"{data.kind}s/{data.id}", data.ended_at
    return NotificationCloudEvent(
        id=event_id,
        source=source,
        type=NOTIFICATION_TYPES[data.kind],
        subject=subject,
        time=rfc3339(at),
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
