"""The `watch` entry point, driven through functions-framework's test client with Cloud
Storage's notification shape (Pub/Sub messagePublished, payload JSON_API_V1): a finalize is one
input however often it is delivered; other event types are acknowledged and ignored; our own
object.finalized events (from a poller, through the outbox) are understood too."""

from __future__ import annotations

import base64
import json
from typing import Any

from skypanda.domain.watch import WatchRule, object_finalized
from skypanda.handlers import watch
from skypanda.handlers.services import Services
from skypanda.runtime import cloudfn

from .test_entry_points import _client, _post, _pubsub, svc

__all__ = ["svc"]  # the fixture


def notification(name: str, generation: str, event_type: str, msg_id: str) -> Any:
    resource = {"kind": "storage#object", "bucket": "b", "name": name, "generation": generation,
                "size": "3"}  # fmt: skip
    message = {
        "messageId": msg_id, "publishTime": "2026-11-22T00:00:00Z",
        "data": base64.b64encode(json.dumps(resource).encode()).decode(),
        "attributes": {
            "notificationConfig": "projects/_/buckets/b/notificationConfigs/1",
            "eventType": event_type, "payloadFormat": "JSON_API_V1", "bucketId": "b",
            "objectId": name, "objectGeneration": generation,
            "eventTime": "2026-11-22T00:00:00Z",
        },
    }  # fmt: skip
    return cloudfn.cloud_event(
        {"id": msg_id, "type": cloudfn.PUBSUB_PUBLISHED,
         "source": "//pubsub.googleapis.com/projects/p/topics/skypanda-object-finalized"},
        {"message": message, "subscription": "projects/p/subscriptions/s"},
    )  # fmt: skip


def test_notifications_duplicated_make_one_input_each(svc: Services) -> None:
    # Given a rule on gs://b/in/ in batches of 2
    rule = WatchRule.model_validate(
        {"name": "raw", "source": "gs://b/in/", "batch": 2,
         "template": {"name": "reco", "command": ["echo", "{input}"]}}
    )  # fmt: skip
    rule = watch.add_rule(svc, rule, "alice")
    client = _client("watch", "cloudevent")

    # When Cloud Storage notifies in/1 twice (two message ids), deletes it, and our poller
    # announces in/2 (an outbox event) twice
    for msg_id in ("n1", "n2"):
        assert (
            _post(client, notification("in/1", "7", "OBJECT_FINALIZE", msg_id)).status_code == 200
        )
    assert _post(client, notification("in/1", "7", "OBJECT_DELETE", "n3")).status_code == 200
    ours = object_finalized("b", "in/2", "1", 3)
    for msg_id in ("p1", "p2"):
        assert _post(client, _pubsub(ours, msg_id)).status_code == 200

    # Then one batch of exactly those two objects made one task, for the rule's owner
    (batch,) = svc.store.get_batches(rule.uid)
    assert batch.count == 2 and batch.task_id
    task = svc.tasks.get_task(batch.task_id, counts=False)
    assert task.owner == "alice" and task.spec.inputs == ["gs://b/in/1", "gs://b/in/2"]
