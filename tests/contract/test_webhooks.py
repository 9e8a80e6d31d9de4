"""WebhookStore contract (`skypanda.ports.notifications`): owners' webhooks and secrets,
deliveries added once, found when due, attempts recorded compare-and-set. Every test runs
against every backend."""

from __future__ import annotations

import pytest

from skypanda.domain.errors import NotFound
from skypanda.domain.webhooks import Delivery, DeliveryAttempt, DeliveryState, Webhook
from skypanda.ports import Store


def _delivery(did: str, *, owner: str = "alice", next_at: float = 100.0, subject: str = "tasks/t1"
              ) -> Delivery:  # fmt: skip
    return Delivery(
        id=did, owner=owner, url="http://127.0.0.1:9/hook", event_id=f"e-{did}", subject=subject,
        headers={"ce-id": f"e-{did}"}, body='{"version":1}', next_at=next_at, created_at=next_at,
    )  # fmt: skip


def test_webhooks_are_listed_by_owner_and_removed(store: Store) -> None:
    # Given two webhooks of alice and one of bob
    a1 = Webhook(id="w1", owner="alice", url="https://example.org/a", created_at=1.0)
    a2 = Webhook(id="w2", owner="alice", url="http://127.0.0.1:8000/b", created_at=2.0)
    b1 = Webhook(id="w3", owner="bob", url="https://example.org/c", created_at=3.0)
    for hook in (a1, a2, b1):
        store.add_webhook(hook)

    # Then each owner sees theirs, oldest first, and an admin sees all
    assert store.list_webhooks("alice") == [a1, a2]
    assert store.list_webhooks(None) == [a1, a2, b1]

    # When one is removed, it is returned and gone; removing it again is NotFound
    assert store.remove_webhook("w1") == a1
    assert store.list_webhooks("alice") == [a2]
    with pytest.raises(NotFound):
        store.remove_webhook("w1")


def test_an_owners_secret_is_made_once_and_can_be_rotated(store: Store) -> None:
    assert store.webhook_secret("alice", "s1") == "s1"
    assert store.webhook_secret("alice", "s2") == "s1"  # kept: not replaced by a new guess
    store.set_webhook_secret("alice", "s3")
    assert store.webhook_secret("alice", "s4") == "s3"
    assert store.webhook_secret("bob", "b1") == "b1"


def test_a_delivery_added_twice_is_one_and_is_due_at_its_time(store: Store) -> None:
    # Given a delivery added twice (the same end delivered twice), and a later one
    store.add_deliveries([_delivery("d1", next_at=100.0)])
    store.add_deliveries([_delivery("d1", next_at=100.0), _delivery("d2", next_at=200.0)])

    # Then at 150 only the first is due; at 200 both, soonest first; bounded by `limit`
    assert [d.id for d in store.due_deliveries(150.0, 10)] == ["d1"]
    assert [d.id for d in store.due_deliveries(200.0, 10)] == ["d1", "d2"]
    assert [d.id for d in store.due_deliveries(200.0, 1)] == ["d1"]


def test_attempts_are_recorded_compare_and_set_and_end_a_delivery(store: Store) -> None:
    # Given a due delivery, read by two sweeps
    store.add_deliveries([_delivery("d1", next_at=100.0)])
    (seen,) = store.due_deliveries(100.0, 10)
    failed = DeliveryAttempt(at=100.0, status=500, duration_s=0.01)

    # When the first records a failed attempt (retry at 101), the second's record loses
    assert store.record_attempt(seen, failed, DeliveryState.PENDING, 101.0)
    assert not store.record_attempt(seen, failed, DeliveryState.PENDING, 101.0)

    # Then it is due again at 101 with one attempt; a success there ends it delivered
    assert store.due_deliveries(100.5, 10) == []
    (again,) = store.due_deliveries(101.0, 10)
    assert again.attempts == [failed]
    ok = DeliveryAttempt(at=101.0, status=204, duration_s=0.01)
    assert store.record_attempt(again, ok, DeliveryState.DELIVERED, 101.0)
    assert store.due_deliveries(1e12, 10) == []
    (done,) = store.list_deliveries("alice")
    assert done.state is DeliveryState.DELIVERED and done.attempts == [failed, ok]


def test_deliveries_are_listed_newest_first_by_owner_and_subject(store: Store) -> None:
    store.add_deliveries([
        _delivery("d1", owner="alice", next_at=1.0, subject="tasks/t1"),
        _delivery("d2", owner="alice", next_at=2.0, subject="workflows/w1"),
        _delivery("d3", owner="bob", next_at=3.0, subject="tasks/t1"),
    ])  # fmt: skip
    assert [d.id for d in store.list_deliveries(None)] == ["d3", "d2", "d1"]
    assert [d.id for d in store.list_deliveries("alice")] == ["d2", "d1"]
    assert [d.id for d in store.list_deliveries(None, subject="tasks/t1")] == ["d3", "d1"]
    assert [d.id for d in store.list_deliveries("alice", subject="tasks/t1")] == ["d1"]
    assert [d.id for d in store.list_deliveries(None, limit=1)] == ["d3"]
