"""Submission by message at the edge: `runtime.intake` decodes the message and verifies its
credential; the `intake` entry point (functions-framework, as deployed) stores the task once
per key, or dead-letters a refused message (without its credential) and tells the publisher."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from functions_framework import create_app

from skypanda.adapters.local.tokens import LocalTokens
from skypanda.domain.errors import Forbidden, InvalidInput, SkypandaError, Unauthorized
from skypanda.domain.events import EventType
from skypanda.domain.identity import Role
from skypanda.domain.models import Queue
from skypanda.domain.quota import Quota
from skypanda.handlers import intake
from skypanda.handlers.pipeline import MAX_TRIES
from skypanda.handlers.services import Services
from skypanda.runtime import cloudfn
from skypanda.runtime.intake import decode_submission, encode_submission, public_attributes
from tests.support import FakeClock, sqlite_services

MAIN = str(Path(__file__).resolve().parents[2] / "functions" / "main.py")
TASK = "name: hello\ncommand: [echo, hi]\nn_jobs: 1\nqueue: local\n"


def _identity() -> LocalTokens:
    tokens = LocalTokens(None)
    tokens.accept("alice-token", "alice", Role.USER)
    tokens.accept("pilot-token", "a-pilot", Role.PILOT)
    return tokens


def _attrs(key: str = "k-1", token: str = "alice-token") -> dict[str, str]:
    return {"key": key, "authorization": f"Bearer {token}"}


DATA = encode_submission("task", TASK, "application/yaml")

# -- the decoder --------------------------------------------------------------------------------


def test_a_message_becomes_a_submission_owned_by_its_verified_principal() -> None:
    event = decode_submission("m1", DATA, _attrs(), _identity())
    assert event.type is EventType.SUBMISSION and event.id == "submission:m1"
    assert event.data == {"kind": "task", "body": TASK, "content_type": "application/yaml",
                          "key": "k-1", "owner": "alice"}  # fmt: skip


@pytest.mark.parametrize(
    ("data", "attributes", "error", "says"),
    [
        (DATA, {"authorization": "Bearer alice-token"}, InvalidInput, "key must match"),
        (DATA, _attrs(key="a b"), InvalidInput, "key must match"),
        (DATA, _attrs(key="k" * 201), InvalidInput, "key must match"),
        (DATA, {"key": "k"}, Unauthorized, "Bearer <token>"),
        (DATA, _attrs(token="stolen"), Unauthorized, "credential refused"),
        (DATA, _attrs(token="pilot-token"), Forbidden, "may not submit"),
        (b"name: [yaml", _attrs(), InvalidInput, "not the JSON record"),
        (b'{"kind": "task", "body": "x"}', _attrs(), InvalidInput, "content_type"),
        (b'{"kind": "job", "body": "", "content_type": "application/yaml"}', _attrs(),
         InvalidInput, "kind"),
        (json.dumps({**json.loads(DATA), "owner": "root"}).encode(), _attrs(), InvalidInput,
         "owner: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_a_bad_message_is_refused_at_the_edge(
    data: bytes, attributes: dict[str, str], error: type[SkypandaError], says: str
) -> None:
    with pytest.raises(error) as refused:
        decode_submission("m1", data, attributes, _identity())
    assert says in refused.value.message and not refused.value.retryable


def test_the_credential_is_never_passed_on() -> None:
    assert public_attributes(_attrs()) == {"key": "k-1"}


# -- the entry point ----------------------------------------------------------------------------


class Sink:
    """Dead letters and rejections, as the PubSubBus would publish them."""

    def __init__(self) -> None:
        self.dead: list[tuple[str, dict[str, str], str]] = []
        self.rejected: list[tuple[str, str, str]] = []

    def dead_letter(self, event_id: str, data: bytes, attributes: Any, reason: str) -> None:
        self.dead.append((event_id, dict(attributes), reason))

    def publish_rejection(self, key: str, reason: str, owner: str = "") -> str:
        self.rejected.append((key, reason, owner))
        return "r1"


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[tuple[Services, Sink]]:
    with sqlite_services(tmp_path, FakeClock(), Queue(name="local")) as services:
        sink = Sink()
        cloudfn.configure(services, _identity(), dead_letters=sink, rejections=sink)
        yield services, sink


def _message(data: bytes, attributes: dict[str, str], msg_id: str, attempt: int = 1) -> CloudEvent:
    message = {"messageId": msg_id, "data": base64.b64encode(data).decode(),
               "attributes": attributes, "deliveryAttempt": attempt}  # fmt: skip
    return cloudfn.cloud_event(
        {"id": msg_id, "type": cloudfn.PUBSUB_PUBLISHED,
         "source": "//pubsub.googleapis.com/projects/p/topics/skypanda-submission"},
        {"message": message, "subscription": "projects/p/subscriptions/s"},
    )  # fmt: skip


def _deliver(event: CloudEvent) -> int:
    client = create_app("intake", MAIN, "cloudevent").test_client()
    headers, body = to_structured(event)
    return int(client.post("/", headers=headers, data=body).status_code)


def test_one_key_delivered_three_times_and_republished_makes_one_task(
    svc: tuple[Services, Sink],
) -> None:
    services, sink = svc
    # When one message is delivered three times, and published again (a new message id)
    for msg_id in ("m1", "m1", "m1", "m2"):
        assert _deliver(_message(DATA, _attrs(), msg_id)) == 200
    # Then alice has one task, under the id her key makes, and nothing was refused
    (task,) = services.tasks.list_tasks()
    assert task.id == intake.submission_id("task", "alice", "k-1") and task.owner == "alice"
    assert sink.dead == [] and sink.rejected == []


def test_a_refused_document_is_dead_lettered_without_its_credential_and_rejected(
    svc: tuple[Services, Sink],
) -> None:
    services, sink = svc
    bad = encode_submission("task", TASK + "colour: blue\n", "application/yaml")
    # When a document with an unknown field arrives
    assert _deliver(_message(bad, _attrs(), "m3")) == 200  # acknowledged: not retried
    # Then it is dead-lettered with the validation message, its credential left out
    ((event_id, attributes, reason),) = sink.dead
    assert event_id == "submission:m3" and "colour" in reason
    assert attributes == {"key": "k-1"}
    # And the publisher is told, with its key, the owner and the reason; nothing is stored
    assert sink.rejected == [("k-1", reason, "alice")]
    assert services.tasks.list_tasks() == []


def test_a_bad_credential_is_rejected_without_an_owner(svc: tuple[Services, Sink]) -> None:
    services, sink = svc
    assert _deliver(_message(DATA, _attrs(token="stolen"), "m4")) == 200
    ((event_id, attributes, reason),) = sink.dead
    assert event_id == "m4" and "credential refused" in reason and attributes == {"key": "k-1"}
    assert sink.rejected == [("k-1", reason, "")]
    assert services.tasks.list_tasks() == []


def test_a_submission_over_its_owner_s_quota_waits_then_is_rejected_naming_the_limit(
    svc: tuple[Services, Sink],
) -> None:
    services, sink = svc
    # Given a deployment where an owner may have one unended task, and alice's task under way
    services.quota = Quota(max_tasks=1, max_jobs=None)
    assert _deliver(_message(DATA, _attrs("k-1"), "m1")) == 200
    # When another of hers arrives: it is not acknowledged (Pub/Sub delivers it again later,
    # when her task may have ended), and nothing is stored or refused yet
    assert _deliver(_message(DATA, _attrs("k-2"), "m2")) == 500
    assert len(services.tasks.list_tasks()) == 1 and sink.dead == [] and sink.rejected == []
    # And at its last delivery it is dead-lettered, and she is told why
    assert _deliver(_message(DATA, _attrs("k-2"), "m2", attempt=MAX_TRIES)) == 200
    ((key, reason, owner),) = sink.rejected
    assert (key, owner) == ("k-2", "alice")
    assert "alice may have at most 1 unended tasks: 1 are under way" in reason
    assert len(services.tasks.list_tasks()) == 1
