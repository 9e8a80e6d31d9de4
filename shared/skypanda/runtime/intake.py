"""Submission by Pub/Sub message: the message format, decoded once at the edge.

A publisher (another pipeline, or `skypanda publish FILE`) sends to the topic
`skypanda-submission` a message whose

    data        a JSON object that the topic's schema (schemas/submission.avsc, Avro, JSON
                encoding) describes: {"kind": "task" | "workflow", "body": "<the task or
                workflow file, YAML or JSON, as `skypanda submit FILE` takes it>",
                "content_type": "application/yaml" | "application/json"}
    attributes  key            the publisher's client key, [A-Za-z0-9._:-]{1,200}: the same
                               key from the same owner makes one task or workflow
                authorization  "Bearer <token>": who submits, verified by the Identity port
                               as an HTTPS request's credential is; role user or admin; the
                               principal's name becomes the owner

The credential is verified here, before the pipeline, as `api.access` does for HTTPS: the
event carries the verified owner, never the credential (so the credential is never in an
event, a log or a dead letter: `public_attributes`), and no owner a message names is believed.

A Python publisher, with google-cloud-pubsub:

    import json
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path("my-project", "skypanda-submission")
    record = {"kind": "task", "body": open("task.yaml").read(),
              "content_type": "application/yaml"}
    future = publisher.publish(topic, json.dumps(record).encode(),
                               key="calib-2026-12-03", authorization=f"Bearer {token}")
    print(future.result())  # the message id

Rejections (the reason and the key, back to the publisher) are published on
`skypanda-notifications` with `type=dev.skypanda.submission.rejected` (`runtime.cloudfn`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from skypanda.domain.errors import Forbidden, InvalidInput, Unauthorized
from skypanda.domain.events import Event, EventType
from skypanda.domain.identity import Principal, Role
from skypanda.handlers.intake import MAX_BODY_BYTES
from skypanda.ports import Identity

__all__ = [
    "KEY",
    "SubmissionRecord",
    "decode_submission",
    "encode_submission",
    "public_attributes",
]

KEY = re.compile(r"[A-Za-z0-9._:-]{1,200}")
SUBMITTERS = frozenset({Role.USER, Role.ADMIN})
SECRET_ATTRIBUTES = ("authorization",)


class SubmissionRecord(BaseModel):
    """The message's data: schemas/submission.avsc as a model (a test keeps them equal)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["task", "workflow"]  # handlers.intake.KINDS
    body: str = Field(max_length=MAX_BODY_BYTES)
    content_type: Literal["application/yaml", "application/json"]  # intake.CONTENT_TYPES


def encode_submission(kind: str, body: str, content_type: str) -> bytes:
    """A message's data: the record, in the schema's JSON encoding.

    Raises:
        InvalidInput: an unknown kind or content type, or a body over the limit.
    """
    try:
        fields = {"kind": kind, "body": body, "content_type": content_type}
        record = SubmissionRecord.model_validate(fields)
    except ValidationError as e:
        raise InvalidInput(f"not a submission: {_problems(e)}") from e
    return json.dumps(record.model_dump(), separators=(",", ":")).encode("utf-8")


def public_attributes(attributes: Mapping[str, str]) -> dict[str, str]:
    """The attributes without the credential (what may be dead-lettered or logged)."""
    return {k: v for k, v in attributes.items() if k.lower() not in SECRET_ATTRIBUTES}


def decode_submission(
    message_id: str, data: bytes, attributes: Mapping[str, str], identity: Identity
) -> Event:
    """The SUBMISSION event a message on the submission topic carries, its owner verified.

    Raises:
        InvalidInput, Unauthorized, Forbidden: a missing or bad key, no or a refused credential,
            a caller that may not submit, data that is not the record. None is retryable; each
            carries in its context the `key` (when it was a valid one) and the `owner` (when
            known), for the rejection.
        SkypandaError: a retryable one from the identity (its provider out of reach).
    """
    key = attributes.get("key", "")
    if not KEY.fullmatch(key):
        shown = repr(key[:50]) if key else "missing"
        raise InvalidInput(f"attribute key must match {KEY.pattern} (it is {shown})")
    principal = _principal(attributes.get("authorization", ""), identity, key)
    try:
        record = SubmissionRecord.model_validate(json.loads(data.decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidInput(
            f"message data is not the JSON record {{kind, body, content_type}}: {e}",
            key=key, owner=principal.name,
        ) from e  # fmt: skip
    except ValidationError as e:
        raise InvalidInput(f"message data: {_problems(e)}", key=key, owner=principal.name) from e
    return Event(
        id=f"submission:{message_id}",
        type=EventType.SUBMISSION,
        subject=f"submissions/{key}",
        data={**record.model_dump(), "key": key, "owner": principal.name},
    )


def _principal(authorization: str, identity: Identity, key: str) -> Principal:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("attribute authorization must be 'Bearer <token>'", key=key)
    try:
        principal = identity.authenticate(token.strip())
    except Unauthorized as e:  # others (an identity provider out of reach) are retried
        raise Unauthorized(f"credential refused: {e.message}", key=key) from e
    if not principal.has_any(SUBMITTERS) or principal.launch_for or principal.pilot:
        roles = ", ".join(sorted(principal.roles))
        raise Forbidden(f"{principal.name} ({roles}) may not submit", key=key)
    return principal


def _problems(e: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'data'}: {err['msg']}" for err in e.errors()
    )
