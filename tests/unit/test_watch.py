"""Watch rules (domain.watch) and Cloud Storage notifications (runtime.objects): validated at
the edge with the field named; an object's key and event id depend on the object only."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from skypanda.domain.events import EventType
from skypanda.domain.watch import (
    Batch,
    BatchStatus,
    SourceKind,
    WatchRule,
    batch_spec,
    batch_task_id,
    object_finalized,
    object_key,
    parse_source,
    watches,
)
from skypanda.runtime.objects import decode_notification, is_notification, list_folder

TEMPLATE = {"name": "reco", "command": ["reco", "{input}"]}


def rule(**fields: object) -> WatchRule:
    return WatchRule.model_validate({"name": "raw", "source": "gs://b/in/", "template": TEMPLATE,
                                     **fields})  # fmt: skip


def test_sources_are_a_bucket_and_prefix_or_an_absolute_folder() -> None:
    assert parse_source("gs://b/in/") == parse_source("gs://b/in/")
    assert (parse_source("gs://b/in/").bucket, parse_source("gs://b/in/").prefix) == ("b", "in/")
    folder = parse_source("file:///data/in/")
    assert (folder.kind, folder.bucket, folder.uri("x/y")) == (
        SourceKind.FOLDER,
        "/data/in",
        "file:///data/in/x/y",
    )
    for bad in ("s3://b/x", "gs:///x", "file://host/x", "relative/path"):
        with pytest.raises(ValueError, match="source"):
            parse_source(bad)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"batch": 0}, "batch"),
        ({"batch": "10"}, "batch"),
        ({"every": "0s"}, "every"),
        ({"every": "30d"}, "every"),
        ({"source": "s3://x"}, "source"),
        ({"template": {**TEMPLATE, "inputs": ["a"]}}, "template"),
        ({"template": {"name": "reco"}}, "command"),
        ({"name": "a b"}, "name"),
    ],
)
def test_a_bad_rule_fails_naming_its_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        rule(**fields)


def test_a_rule_watches_its_bucket_and_prefix_only_while_enabled() -> None:
    r = rule(every="2m")
    assert r.every_s == 120.0
    assert watches(r, "b", "in/x") and not watches(r, "b", "out/x")
    assert not watches(r, "other", "in/x")
    assert not watches(rule(enabled=False), "b", "in/x")


def test_keys_and_ids_name_the_object_not_the_announcement() -> None:
    assert object_key("r1", "b", "x", "1") == object_key("r1", "b", "x", "1")
    assert object_key("r1", "b", "x", "1") != object_key("r1", "b", "x", "2")
    assert object_key("r1", "b", "x", "1") != object_key("r2", "b", "x", "1")
    one, two = object_finalized("b", "a/x", "1", 5), object_finalized("b", "a/x", "1", 7)
    assert one.id == two.id and "/" not in one.id
    assert one.type is EventType.OBJECT_FINALIZED


def test_a_batch_makes_the_template_with_its_objects_as_sorted_inputs() -> None:
    batch = Batch("r1-00000003", "raw", 3, BatchStatus.CLOSED, 2, 0.0, 10.0)
    spec = batch_spec(rule(), batch, ["gs://b/in/2", "gs://b/in/1"])
    assert (spec.name, spec.inputs) == ("reco-3", ["gs://b/in/1", "gs://b/in/2"])
    assert batch_task_id(batch.id) == batch_task_id("r1-00000003") != batch_task_id("r1-00000004")


def test_a_finalize_notification_is_an_object_event_and_others_are_ignored() -> None:
    attributes = {"eventType": "OBJECT_FINALIZE", "payloadFormat": "JSON_API_V1",
                  "bucketId": "b", "objectId": "in/x", "objectGeneration": "17"}  # fmt: skip
    data = json.dumps({"bucket": "b", "name": "in/x", "size": "42"}).encode()
    assert is_notification(attributes) and not is_notification({"type": "dev.skypanda.tick"})
    event = decode_notification(attributes, data)
    assert event == object_finalized("b", "in/x", "17", 42)
    assert decode_notification({**attributes, "eventType": "OBJECT_DELETE"}, data) is None
    assert decode_notification(attributes, b"not json") == object_finalized("b", "in/x", "17", 0)


def test_a_folder_lists_a_file_once_it_has_settled_so_a_file_being_written_is_one_object(
    tmp_path: Path,
) -> None:
    # Given a file just created empty, its writer not done yet
    f = tmp_path / "raw.dat"
    f.write_bytes(b"")
    # Then a poll does not list it (listed now, it would be announced again once written)
    assert list(list_folder(str(tmp_path), "", "", 10, settle_s=60)) == []
    # When it is written and left alone past the settle time
    f.write_bytes(b"data")
    os.utime(f, ns=(f.stat().st_atime_ns, time.time_ns() - 61 * 10**9))
    # Then it is listed once, whole, its modification time as its generation
    ((name, generation, size),) = list_folder(str(tmp_path), "", "", 10, settle_s=60)
    assert (name, generation, size) == ("raw.dat", str(f.stat().st_mtime_ns), 4)
