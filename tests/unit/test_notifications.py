"""Notifications: the schema file is what the model makes, signatures verify (and only with the
right secret, body and time), back-off grows and is bounded, outcomes are decided purely."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from skypanda.domain.notifications import (
    Notification,
    check_webhook_url,
    cloud_event,
    schema_text,
)
from skypanda.domain.webhooks import (
    MAX_BACKOFF_S,
    MAX_TRIES,
    DeliveryState,
    backoff,
    outcome,
    signature,
)
from skypanda.notifications import InvalidSignature, verify

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "notification.v1.json"
NOTE = Notification(
    kind="task", id="t1", name="calib", owner="alice", status="done", job_counts={"finished": 3},
    created_at=1000.0, ended_at=1060.5, path="/v1/tasks/t1",
)  # fmt: skip


def test_the_schema_file_is_what_the_model_makes() -> None:
    assert SCHEMA_FILE.read_text() == schema_text(), (
        "schemas/notification.v1.json is stale: regenerate it with\n  python -c 'from "
        'skypanda.domain.notifications import schema_text as s; print(s(), end="")\' '
        "> schemas/notification.v1.json"
    )


def test_a_notification_validates_against_the_schema_and_a_wrong_one_does_not() -> None:
    import json

    schema = json.loads(SCHEMA_FILE.read_text())
    event = cloud_event("task-ended:t1:done:1060.500000", "/skypanda", NOTE)
    jsonschema.validate(event.model_dump(mode="json"), schema)
    bad = {**event.model_dump(mode="json"), "type": "dev.skypanda.other"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_a_signed_request_verifies_and_returns_its_cloudevent() -> None:
    event = cloud_event("e1", "/skypanda", NOTE)
    body = event.body()
    headers = {**event.headers(), "Skypanda-Signature": signature("s3cret", 2000, body)}
    got = verify("s3cret", headers, body, now=2010)
    assert (got["id"], got["type"], got["data"]["status"]) == (
        "e1",
        "dev.skypanda.task.ended",
        "done",
    )


@pytest.mark.parametrize(
    ("secret", "body", "now", "why"),
    [
        ("other", b'{"a":1}', 2000, "no signature matches"),
        ("s3cret", b'{"a":2}', 2000, "no signature matches"),  # body changed
        ("s3cret", b'{"a":1}', 2000 + 301, "outside"),  # replayed late
    ],
)
def test_a_wrong_secret_body_or_time_fails(secret: str, body: bytes, now: int, why: str) -> None:
    headers = {"skypanda-signature": signature("s3cret", 2000, b'{"a":1}')}
    with pytest.raises(InvalidSignature, match=why):
        verify(secret, headers, body, now=now)


def test_a_missing_signature_fails() -> None:
    with pytest.raises(InvalidSignature, match="missing"):
        verify("s", {}, b"{}", now=0)


def test_backoff_grows_by_four_and_stops_at_an_hour() -> None:
    assert [backoff(n) for n in range(1, 8)] == [1, 4, 16, 64, 256, 1024, MAX_BACKOFF_S]
    assert backoff(3, base=0.1) == pytest.approx(1.6)


_D, _P, _F = DeliveryState.DELIVERED, DeliveryState.PENDING, DeliveryState.FAILED


@pytest.mark.parametrize(
    ("status", "tries", "want"),
    [
        (200, 1, _D), (204, 5, _D), (500, 1, _P), (None, 2, _P), (429, 1, _P),
        (404, 1, _F), (301, 1, _F), (503, MAX_TRIES, _F),
    ],
)  # fmt: skip
def test_an_answer_decides_what_follows(
    status: int | None, tries: int, want: DeliveryState
) -> None:
    assert outcome(status, tries) == want


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/computeMetadata/v1/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[fe80::1]:8080/hook",
    ],
)
def test_a_webhook_may_not_call_the_metadata_server(url: str) -> None:
    with pytest.raises(ValueError, match="link-local"):
        check_webhook_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/hook", "https://hooks.example.org/x"])
def test_loopback_and_public_webhooks_are_allowed(url: str) -> None:
    assert check_webhook_url(url) == url
