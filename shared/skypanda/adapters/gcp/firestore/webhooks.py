"""WebhookStore on Firestore: `webhooks/{id}`, `webhook_secrets/{owner}` and
`deliveries/{id}` (the delivery as JSON in `doc`, beside the fields its queries need: state,
next_at, owner, subject, created_at, tries). A delivery's id is a hash of (event, URL): not
sequential, and the same end added twice is one document (created only if absent). Indexes:
deliveries (state, next_at), (owner, created_at desc), (subject, created_at desc),
(owner, subject, created_at desc); webhooks (owner, created_at): infra/firestore.indexes.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from skypanda.adapters.gcp.firestore.base import FirestoreBase, eq, fields, where
from skypanda.domain.errors import InvalidInput, NotFound
from skypanda.domain.webhooks import Delivery, DeliveryAttempt, DeliveryState, Webhook

PENDING = str(DeliveryState.PENDING)


def webhook_doc(hook: Webhook) -> dict[str, Any]:
    return hook.model_dump()


def delivery_doc(d: Delivery) -> dict[str, Any]:
    """A delivery's document: the delivery as JSON, and the fields its queries need."""
    return {
        "owner": d.owner, "subject": d.subject, "state": str(d.state), "next_at": d.next_at,
        "created_at": d.created_at, "tries": len(d.attempts), "doc": d.model_dump_json(),
    }  # fmt: skip


class WebhookPart(FirestoreBase):
    @property
    def _webhooks(self) -> firestore.CollectionReference:
        return self._db.collection(self.collection("webhooks"))

    @property
    def _webhook_secrets(self) -> firestore.CollectionReference:
        return self._db.collection(self.collection("webhook_secrets"))

    @property
    def _deliveries(self) -> firestore.CollectionReference:
        return self._db.collection(self.collection("deliveries"))

    def add_webhook(self, hook: Webhook) -> None:
        with self._backend("add_webhook"):
            try:
                self._webhooks.document(hook.id).create(webhook_doc(hook))
            except (gexc.AlreadyExists, gexc.Conflict) as e:
                raise InvalidInput(f"webhook id {hook.id} already exists") from e

    def list_webhooks(self, owner: str | None) -> list[Webhook]:
        query = where(self._webhooks, None if owner is None else eq("owner", owner))
        snaps = self._stream("list_webhooks", query.order_by("created_at"))
        return [Webhook.model_validate(fields(s)) for s in snaps]

    def remove_webhook(self, hook_id: str) -> Webhook:
        ref = self._webhooks.document(hook_id)
        doc = self._read("remove_webhook", ref)
        if doc is None:
            raise NotFound(f"no webhook with id {hook_id!r}", webhook_id=hook_id)
        with self._backend("remove_webhook"):
            ref.delete()
        return Webhook.model_validate(doc)

    def webhook_secret(self, owner: str, new: str) -> str:
        ref = self._webhook_secrets.document(owner)
        with self._backend("webhook_secret"):
            try:
                ref.create({"secret": new})
                return new
            except (gexc.AlreadyExists, gexc.Conflict):
                return str(fields(ref.get())["secret"])

    def set_webhook_secret(self, owner: str, secret: str) -> None:
        with self._backend("set_webhook_secret"):
            self._webhook_secrets.document(owner).set({"secret": secret})

    def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:  # a few per end (the task's URLs and its owner's webhooks)
            doc = delivery_doc(d)
            # Added already: the same end, delivered again.
            with self._backend("add_deliveries"), suppress(gexc.AlreadyExists, gexc.Conflict):
                self._deliveries.document(d.id).create(doc)

    def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        query = where(self._deliveries, eq("state", PENDING), FieldFilter("next_at", "<=", now))
        snaps = self._stream("due_deliveries", query.order_by("next_at").limit(limit))
        return [Delivery.model_validate_json(fields(s)["doc"]) for s in snaps]

    def record_attempt(
        self, delivery: Delivery, attempt: DeliveryAttempt, state: DeliveryState, next_at: float
    ) -> bool:
        tries = len(delivery.attempts)
        moved = delivery.model_copy(
            update={"attempts": [*delivery.attempts, attempt], "state": state, "next_at": next_at}
        )
        change = {
            "state": str(state), "next_at": next_at, "tries": tries + 1,
            "doc": moved.model_dump_json(),
        }  # fmt: skip
        ref = self._deliveries.document(delivery.id)
        return self._cas("record_attempt", ref, lambda d: d["tries"] == tries, change)

    def list_deliveries(
        self, owner: str | None, *, subject: str | None = None, limit: int = 50
    ) -> list[Delivery]:
        query = where(
            self._deliveries,
            None if owner is None else eq("owner", owner),
            None if subject is None else eq("subject", subject),
        )
        ordered = query.order_by("created_at", direction=firestore.Query.DESCENDING)
        snaps = self._stream("list_deliveries", ordered.limit(limit))
        return [Delivery.model_validate_json(fields(s)["doc"]) for s in snaps]
