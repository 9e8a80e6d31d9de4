"""notify on the embedded store: an end delivered twice stores its deliveries once; deliveries
are sent by the sweep, signed, retried after a back-off and given up after a refusal; owners
manage only their own webhooks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from skypanda.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from skypanda.domain.events import TaskEnded, payload_of
from skypanda.domain.models import TaskSpec
from skypanda.domain.notifications import NotificationCloudEvent
from skypanda.domain.webhooks import DeliveryAttempt, DeliveryState
from skypanda.handlers import notify, task_actions, webhooks
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from skypanda.notifications import verify
from skypanda.ports.notifications import WebhookRequest
from tests.handlers.test_end_events import _ends
from tests.support import FakeClock


class FakeNotifier:
    """Answers each POST with the next status of `answers`; keeps what it was asked."""

    def __init__(self, answers: Sequence[int]) -> None:
        self.answers = list(answers)
        self.published: list[NotificationCloudEvent] = []
        self.posted: list[WebhookRequest] = []

    def publish(self, event: NotificationCloudEvent) -> None:
        self.published.append(event)

    def post(self, requests: Sequence[WebhookRequest], now: float) -> list[DeliveryAttempt]:
        self.posted += requests
        return [DeliveryAttempt(at=now, status=self.answers.pop(0)) for _ in requests]


def _killed_task_end(svc: Services, tmp_path: Path, urls: list[str]) -> TaskEnded:
    task = submit(svc, TaskSpec(name="t", command=["true"], n_jobs=1, notify=urls), "alice")
    task_actions.kill(svc, task.id, "alice", "stop")
    [(_, event_id, data)] = _ends(tmp_path)
    from skypanda.domain.events import Event, EventType

    payload = payload_of(Event(event_id, EventType.TASK_ENDED, f"tasks/{task.id}", data))
    assert isinstance(payload, TaskEnded)
    return payload


def test_an_end_delivered_twice_stores_one_delivery_per_url(svc: Services, tmp_path: Path) -> None:
    svc.notifier = FakeNotifier([])
    end = _killed_task_end(svc, tmp_path, ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b"])

    notify.handle(svc, end)
    notify.handle(svc, end)  # redelivered

    assert sorted(d.url for d in svc.webhooks.list_deliveries("alice")) == [
        "http://127.0.0.1:9/a", "http://127.0.0.1:9/b",
    ]  # fmt: skip
    published = svc.notifier.published  # type: ignore[attr-defined]
    assert len({e.id for e in published}) == 1  # the topic may see it twice: one ce-id


def test_the_sweep_retries_with_back_off_then_delivers_signed(
    svc: Services, tmp_path: Path, clock: FakeClock
) -> None:
    fake = FakeNotifier([500, 503, 200])
    svc.notifier = fake
    notify.handle(svc, _killed_task_end(svc, tmp_path, ["http://127.0.0.1:9/a"]))

    assert notify.send_due(svc, clock.now()) == 1  # 500: due again in 1 s
    assert notify.send_due(svc, clock.advance(0.5)) == 0
    assert notify.send_due(svc, clock.advance(0.5)) == 1  # 503: due again in 4 s
    assert notify.send_due(svc, clock.advance(3.9)) == 0
    assert notify.send_due(svc, clock.advance(0.1)) == 1  # 200
    (d,) = svc.webhooks.list_deliveries("alice")
    assert d.state is DeliveryState.DELIVERED and [a.status for a in d.attempts] == [500, 503, 200]
    secret = svc.webhooks.webhook_secret("alice", "unused")
    last = fake.posted[-1]
    assert verify(secret, last.headers, last.body, now=clock.now())["data"]["status"] == "aborted"


def test_a_refusal_is_not_retried(svc: Services, tmp_path: Path, clock: FakeClock) -> None:
    svc.notifier = FakeNotifier([404])
    notify.handle(svc, _killed_task_end(svc, tmp_path, ["http://127.0.0.1:9/a"]))
    notify.send_due(svc, clock.now())
    (d,) = svc.webhooks.list_deliveries("alice")
    assert d.state is DeliveryState.FAILED
    assert notify.send_due(svc, clock.advance(3600)) == 0


def test_owners_manage_their_own_webhooks_and_admins_anyones(svc: Services) -> None:
    hook, secret = webhooks.add(svc, "alice", "https://example.org/a")
    assert webhooks.secret(svc, "alice", rotate=False) == secret
    with pytest.raises(Conflict, match="already"):
        webhooks.add(svc, "alice", "https://example.org/a")
    with pytest.raises(Forbidden):
        webhooks.add(svc, "bob", "https://example.org/b", owner="alice")
    with pytest.raises(NotFound):
        webhooks.remove(svc, "bob", hook.id)
    with pytest.raises(InvalidInput):
        webhooks.add(svc, "alice", "file:///etc/passwd")
    assert webhooks.listed(svc, "root", owner=None, admin=True) == [hook]
    assert webhooks.remove(svc, "root", hook.id, admin=True) == hook
    assert webhooks.secret(svc, "alice", rotate=True) != secret
