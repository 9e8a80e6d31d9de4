"""Notifications: owners' webhooks and secrets, pending deliveries, and the way out (Notifier)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from skypanda.domain.notifications import NotificationCloudEvent
from skypanda.domain.webhooks import Delivery, DeliveryAttempt, DeliveryState, Webhook


class WebhookStore(Protocol):
    """Owners' webhooks and secrets, and deliveries with their attempts."""

    def add_webhook(self, hook: Webhook) -> None:
        """Store a new webhook (its id must be new)."""

    def list_webhooks(self, owner: str | None) -> list[Webhook]:
        """An owner's webhooks (None: everyone's), oldest first."""

    def remove_webhook(self, hook_id: str) -> Webhook:
        """Remove a webhook and return it. Raises NotFound."""

    def webhook_secret(self, owner: str, new: str) -> str:
        """The owner's signing secret: the stored one, or `new`, stored now if none was."""

    def set_webhook_secret(self, owner: str, secret: str) -> None:
        """Replace the owner's signing secret (a rotation)."""

    def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        """Store new deliveries; one whose id is already stored is left as it is (a repeated
        end event adds nothing)."""

    def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        """Pending deliveries due at `now` or before, soonest first."""

    def record_attempt(
        self, delivery: Delivery, attempt: DeliveryAttempt, state: DeliveryState, next_at: float
    ) -> bool:
        """Append an attempt and move the delivery to `state` (due at `next_at`),
        compare-and-set on it still having `len(delivery.attempts)` attempts. False when not
        (another sweep recorded one meanwhile)."""

    def list_deliveries(
        self, owner: str | None, *, subject: str | None = None, limit: int = 50
    ) -> list[Delivery]:
        """Deliveries, newest first: an owner's (None: everyone's), of one subject
        (`tasks/<id>`, `workflows/<id>`) if given."""


@dataclass(frozen=True)
class WebhookRequest:
    """One signed POST to send."""

    url: str
    headers: dict[str, str]
    body: bytes


class Notifier(Protocol):
    """Where notifications leave skypanda: a topic (Google Cloud), and webhooks (HTTP)."""

    def publish(self, event: NotificationCloudEvent) -> None:
        """Publish the notification to the notifications topic (no-op where there is none).

        Raises:
            BackendUnavailable: the topic did not accept it (the event is delivered again).
        """

    def post(self, requests: Sequence[WebhookRequest], now: float) -> list[DeliveryAttempt]:
        """POST each request (concurrently, each bounded by a timeout); one attempt each, in
        order, stamped `now`. Never raises for a receiver's failure: it is the attempt's."""
