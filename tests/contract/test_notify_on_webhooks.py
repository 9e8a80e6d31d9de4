"""WebhookStore contract for webhooks registered on one task or workflow (`subject`): the
subject is kept and read back, beside the owner-wide ones. Every test runs against every
backend."""

from __future__ import annotations

from skypanda.domain.webhooks import Webhook
from skypanda.ports import Store


def test_a_webhooks_subject_is_kept_beside_owner_wide_ones(store: Store) -> None:
    # Given an owner-wide webhook and one on a task, and one on a workflow
    everything = Webhook(id="w1", owner="alice", url="https://example.org/a", created_at=1.0)
    one_task = Webhook(id="w2", owner="alice", url="https://example.org/a", created_at=2.0,
                       subject="tasks/t1")  # fmt: skip
    one_wf = Webhook(id="w3", owner="alice", url="https://example.org/b", created_at=3.0,
                     subject="workflows/w1")  # fmt: skip
    for hook in (everything, one_task, one_wf):
        store.add_webhook(hook)

    # Then they are read back as stored, and each applies where it should
    assert store.list_webhooks("alice") == [everything, one_task, one_wf]
    assert [h.id for h in store.list_webhooks("alice") if h.applies(["tasks/t1"])] == ["w1", "w2"]
    assert store.remove_webhook("w2") == one_task
