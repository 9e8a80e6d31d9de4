"""Data-driven work end to end: new objects in a watched folder (embedded default) or bucket
(fake-gcs on the emulators) become input batches of tasks made from a template, N objects or
T seconds a batch, each object in exactly one job, even when it is announced twice."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skypanda.domain.states import TaskStatus
from skypanda.domain.watch import BatchStatus, WatchRule, object_finalized
from skypanda.handlers import watch
from skypanda.handlers.services import Services
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import cli, wait_until

N_OBJECTS, BATCH, EVERY_S = 50, 20, 4.0
TEMPLATE = {"name": "reco", "command": ["echo", "reco {input}"], "files_per_job": 1}


def add_rule(svc: Services, source: str, owner: str = "local", every: float = EVERY_S) -> WatchRule:
    rule = WatchRule.model_validate(
        {"name": "raw", "source": source, "template": TEMPLATE, "batch": BATCH, "every": every}
    )
    return watch.add_rule(svc, rule, owner)


def batches_done(svc: Services, rule: WatchRule, objects: int = 0) -> list[Any]:
    """The rule's batches once all three (or as many as hold `objects`) are submitted and
    their tasks done, else []."""
    batches = svc.store.get_batches(rule.uid)
    if objects:
        if sum(b.count for b in batches) < objects:
            return []
    elif len(batches) < 3:
        return []
    if any(b.status is not BatchStatus.SUBMITTED for b in batches):
        return []
    tasks = [svc.tasks.get_task(b.task_id, counts=False) for b in batches]
    return list(batches) if all(t.status is TaskStatus.DONE for t in tasks) else []


def inputs_by_job(svc: Services, rule: WatchRule) -> Counter[str]:
    """How many jobs each input is in, across the rule's tasks."""
    seen: Counter[str] = Counter()
    for b in svc.store.get_batches(rule.uid):
        for job in svc.jobs.list_jobs(b.task_id):
            seen.update(job.inputs)
    return seen


def test_files_in_a_folder_become_batches_each_in_exactly_one_job(
    make_system: Callable[..., LocalSystem], tmp_path: Path
) -> None:
    # Given a running embedded system and a rule watching a folder: batches of 20 or 4 s
    system = make_system()
    folder = tmp_path / "incoming"
    folder.mkdir()
    rule = add_rule(system.svc, folder.as_uri())

    # When 50 files land in the folder
    for i in range(N_OBJECTS):
        (folder / f"f{i:02d}.dat").write_text(f"data {i}")

    # Then they become three tasks of 20, 20 and (after 4 s) 10 inputs, which run to done
    batches = wait_until(lambda: batches_done(system.svc, rule), 120, "three batches done")
    assert sorted(b.count for b in batches) == [10, 20, 20]

    # When every file is announced again (duplicate notifications), straight to the handler
    for i in range(N_OBJECTS):
        f = folder / f"f{i:02d}.dat"
        event = object_finalized(str(folder), f.name, str(f.stat().st_mtime_ns), 6)
        system.router.deliver(event)
        system.router.deliver(event)

    # Then no new batch opened and each file is in exactly one job
    assert len(system.svc.store.get_batches(rule.uid)) == 3
    uris = {(folder / f"f{i:02d}.dat").as_uri() for i in range(N_OBJECTS)}
    assert inputs_by_job(system.svc, rule) == Counter(dict.fromkeys(uris, 1))


def gcs_notification(bucket: str, name: str, generation: str) -> tuple[bytes, dict[str, str]]:
    """A Cloud Storage Pub/Sub notification (JSON_API_V1) as Cloud Storage publishes it."""
    resource = {"kind": "storage#object", "bucket": bucket, "name": name,
                "generation": generation, "size": "6"}  # fmt: skip
    attributes = {
        "notificationConfig": f"projects/_/buckets/{bucket}/notificationConfigs/1",
        "eventType": "OBJECT_FINALIZE", "payloadFormat": "JSON_API_V1",
        "bucketId": bucket, "objectId": name, "objectGeneration": generation,
        "eventTime": "2026-01-01T00:00:00Z",
    }  # fmt: skip
    return json.dumps(resource).encode(), attributes


def test_objects_in_a_fake_gcs_bucket_become_batches_even_when_notified_twice(cloud: Any) -> None:
    from skypanda.adapters.gcp.topology import topic_name
    from skypanda.domain.events import EventType

    # Given the emulated cloud and a rule watching a fake-gcs bucket's prefix
    bucket = cloud.storage.create_bucket("watched-data")
    rule = add_rule(cloud.svc, "gs://watched-data/raw/", every=20.0)  # the emulators are slow

    # When 50 objects are uploaded (one outside the prefix)
    started = time.monotonic()
    generations = {}
    for i in range(N_OBJECTS):
        blob = bucket.blob(f"raw/o{i:02d}.dat")
        blob.upload_from_string(f"data {i}")
        generations[blob.name] = str(blob.generation)
    bucket.blob("other/ignored.dat").upload_from_string("no")

    # And Cloud Storage notifies each of the first 10 twice on the object topic (with a
    # delete notification, which is ignored)
    topic = cloud.publisher.topic_path(
        cloud.project, topic_name(EventType.OBJECT_FINALIZED, cloud.topic_prefix)
    )
    for name in sorted(generations)[:10]:
        data, attributes = gcs_notification("watched-data", name, generations[name])
        for _ in range(2):
            cloud.publisher.publish(topic, data, **attributes).result(timeout=10)
    deleted = {**attributes, "eventType": "OBJECT_DELETE"}
    cloud.publisher.publish(topic, data, **deleted).result(timeout=10)
    uploads_s = time.monotonic() - started

    # Then they become tasks of at most 20 inputs, which run to done: 20, 20 and 10 (closed
    # at its deadline) when the uploads took well under the batches' 20 s (on a machine so
    # busy that they did not, a batch closes at its deadline before it is full)
    batches = wait_until(lambda: batches_done(cloud.svc, rule, N_OBJECTS), 240, "batches done")
    shape = [(b.count, b.first_at) for b in batches]
    assert all(b.count <= BATCH for b in batches), shape
    if uploads_s < 10:
        assert sorted(b.count for b in batches) == [10, 20, 20], shape

    # And each object is in exactly one job
    uris = {f"gs://watched-data/{name}" for name in generations}
    assert inputs_by_job(cloud.svc, rule) == Counter(dict.fromkeys(uris, 1))


def test_watch_add_list_remove_through_the_cli(
    make_system: Callable[..., LocalSystem], tmp_path: Path
) -> None:
    # Given a running system, a template task file and a folder
    system = make_system()
    template = tmp_path / "reco.yaml"
    template.write_text("name: reco\ncommand: [echo, '{input}']\n")
    folder = tmp_path / "in"
    folder.mkdir()

    # When a rule is added with options, then listed
    added = cli(system, "watch", "add", "--source", folder.as_uri(), "--template", str(template),
                "--batch", "2", "--every", "1m", "--json")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["every"] == 60.0
    listed = json.loads(cli(system, "watch", "list", "--json").stdout)

    # Then it is there, named after its template, owned by the caller
    assert [(r["name"], r["batch"]) for r in listed] == [("reco", 2)]
    assert listed[0]["owner"] == json.loads(cli(system, "whoami", "--json").stdout)["name"]

    # And two files make one task of two jobs
    for i in range(2):
        (folder / f"x{i}").write_text("x")
    rule = system.svc.store.get_watch("reco")
    wait_until(lambda: batches_of(system.svc, rule, 1), 60, "one batch submitted")

    # And a template with inputs, or a bad source, is refused with the field named
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ncommand: [echo]\ninputs: [a]\n")
    refused = cli(system, "watch", "add", "--source", "s3://x", "--template", str(bad))
    assert refused.returncode == 2 and "source" in refused.stderr, refused.stderr

    # When it is removed, it is gone
    assert cli(system, "watch", "remove", "reco").returncode == 0
    assert json.loads(cli(system, "watch", "list", "--json").stdout) == []
    assert cli(system, "watch", "remove", "reco").returncode == 1


def batches_of(svc: Services, rule: WatchRule, n: int) -> bool:
    batches = svc.store.get_batches(rule.uid)
    return len(batches) == n and all(b.status is BatchStatus.SUBMITTED for b in batches)
