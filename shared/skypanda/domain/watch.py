"""Watch rules (iDDS-style data-driven work): new objects under a source become the inputs of
tasks made from a template, in batches of N objects or T seconds, whichever comes first.

Pure: the rule and its validation, the object's key (what makes it one input however often it
is announced), which rules an object belongs to, when a batch is due, and the task a batch
makes. The store keeps rules, objects and batches (`ports.watches`); `handlers.watch` acts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator

from skypanda.domain.events import Event, EventType
from skypanda.domain.taskspec import TaskSpec
from skypanda.domain.values import NAME_PATTERN, Flag, Int, Seconds, Strict, Text

MAX_BATCH = 10_000
"""Objects in one batch at most (one task's inputs: read in one go when the batch closes)."""
MAX_EVERY_S = 7 * 86_400
RECORDS_KEPT_S = 45 * 86_400
"""How long an ended batch and the records of its objects are kept (then the sweep prunes
them): past Pub/Sub's longest message retention (31 days), so no redelivered notification of
an object can find its record gone and take the object again."""
MAX_SOURCE_CHARS = 1024
_SPLIT_FIELDS = ("inputs", "n_jobs", "n_events", "jobs", "input_sizes_mb")
"""Fields a template may not set: a batch's objects are its inputs."""


class SourceKind(StrEnum):
    GCS = "gs"
    FOLDER = "file"


@dataclass(frozen=True)
class Source:
    """Where objects appear: a Cloud Storage bucket and prefix, or a local folder (its
    absolute path is the "bucket", names are paths relative to it)."""

    kind: SourceKind
    bucket: str
    prefix: str

    def uri(self, name: str) -> str:
        """The input a task gets for object `name`."""
        if self.kind is SourceKind.GCS:
            return f"gs://{self.bucket}/{name}"
        return f"file://{self.bucket.rstrip('/')}/{name}"


def parse_source(text: str) -> Source:
    """`gs://bucket/prefix` or `file:///absolute/folder`.

    Raises:
        ValueError: naming what is wrong.
    """
    parts = urlsplit(text)
    if parts.scheme == "gs":
        if not parts.netloc:
            raise ValueError(f"source {text!r}: no bucket (use gs://bucket/prefix)")
        return Source(SourceKind.GCS, parts.netloc, parts.path.lstrip("/"))
    if parts.scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise ValueError(f"source {text!r}: use file:///absolute/folder")
        folder = path.rstrip("/") or "/"
        return Source(SourceKind.FOLDER, folder, "")
    raise ValueError(f"source {text!r}: use gs://bucket/prefix or file:///absolute/folder")


class WatchRule(Strict):
    """A watch rule as a user writes it (and as it is stored: `owner`, `uid`, `created_at` are
    set by the server)."""

    name: str = Field(pattern=NAME_PATTERN)
    source: Text = Field(max_length=MAX_SOURCE_CHARS)
    template: dict[str, Any]
    batch: Int = Field(default=100, ge=1, le=MAX_BATCH)
    every_s: Seconds = Field(default=60.0, le=MAX_EVERY_S, alias="every")
    enabled: Flag = True
    owner: str = ""
    uid: str = ""
    created_at: float = 0.0

    model_config = Strict.model_config | {"populate_by_name": True}

    @field_validator("source")
    @classmethod
    def _source(cls, source: str) -> str:
        parse_source(source)
        return source

    @field_validator("template")
    @classmethod
    def _template(cls, template: dict[str, Any]) -> dict[str, Any]:
        given = [f for f in _SPLIT_FIELDS if template.get(f) is not None]
        if given:
            raise ValueError(
                f"a template sets no {', '.join(given)}: the watched objects are its inputs"
            )
        TaskSpec.model_validate({**template, "inputs": ["gs://example/object"]})
        return template

    @property
    def where(self) -> Source:
        return parse_source(self.source)

    @property
    def spec_name(self) -> str:
        return str(self.template["name"])


def watches(rule: WatchRule, bucket: str, name: str) -> bool:
    """Whether `rule` watches object `name` of `bucket` (enabled, same bucket, under its
    prefix)."""
    where = rule.where
    return rule.enabled and where.bucket == bucket and name.startswith(where.prefix)


def object_key(rule_uid: str, bucket: str, name: str, generation: str) -> str:
    """The key of one object for one rule: the same object announced twice (a redelivered
    notification, a folder listed again) has the same key, so it is one input."""
    raw = "\0".join((rule_uid, bucket, name, generation))
    return "o" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def batch_id(rule_uid: str, seq: int) -> str:
    return f"{rule_uid}-{seq:08d}"


def batch_task_id(batch: str) -> str:
    """A batch's task id: derived from the batch, so submitting it twice makes one task."""
    return "w" + hashlib.sha256(batch.encode()).hexdigest()[:12]


class BatchStatus(StrEnum):
    OPEN = "open"  # taking objects
    CLOSED = "closed"  # full or due: its task is being submitted
    SUBMITTED = "submitted"  # its task exists
    FAILED = "failed"  # its task was refused (the reason says why)


@dataclass(frozen=True)
class Batch:
    id: str
    rule: str
    seq: int
    status: BatchStatus
    count: int
    first_at: float
    due_at: float
    task_id: str = ""
    reason: str = ""


def full(count: int, rule: WatchRule) -> bool:
    return count >= rule.batch


def batch_spec(rule: WatchRule, batch: Batch, inputs: list[str]) -> TaskSpec:
    """The task a batch makes: the template with the batch's objects as its inputs (sorted: the
    same batch always makes the same task), split by the template's own rule.

    Raises:
        pydantic.ValidationError: the inputs do not fit the template (e.g. too long a URI).
    """
    name = f"{rule.spec_name}-{batch.seq}"[:100]
    return TaskSpec.model_validate({**rule.template, "name": name, "inputs": sorted(inputs)})


def object_finalized(bucket: str, name: str, generation: str, size: int) -> Event:
    """The event that announces an object. Its id comes from (bucket, name, generation): a
    notification and a listing of the same object are the same event (a hash: names hold `/`,
    which no Firestore document id may)."""
    raw = "\0".join((bucket, name, generation))
    return Event(
        id="object:" + hashlib.sha256(raw.encode()).hexdigest()[:32],
        type=EventType.OBJECT_FINALIZED,
        subject=f"objects/{bucket}",
        data={"bucket": bucket, "name": name, "generation": generation, "size": size},
    )


__all__ = [
    "MAX_BATCH",
    "Batch",
    "BatchStatus",
    "Source",
    "SourceKind",
    "WatchRule",
    "batch_id",
    "batch_spec",
    "batch_task_id",
    "full",
    "object_finalized",
    "object_key",
    "parse_source",
    "watches",
]
