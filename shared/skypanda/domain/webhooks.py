"""Webhooks: where notifications are POSTed, how each POST is signed, and when it is retried.

Signing. Every POST carries `Skypanda-Signature: t=<unix seconds>,v1=<hex>` where the hex is
HMAC-SHA256(secret, f"{t}.{body}"): the timestamp is signed with the body, so a captured
request cannot be replayed later than the receiver's tolerance (`skypanda.notifications.verify`).
The secret is one per owner, generated the first time it is needed and kept in the store;
`skypanda webhooks secret` shows it to its owner (`--rotate` makes a new one). One per owner,
not one per webhook, because a task or workflow file names its webhook URLs (`notify:`), and
such a file may come by Pub/Sub, where no reply can show a per-URL secret: the receiver must
know the secret before the task is submitted.

Retries. A delivery is stored pending with its due time; the sweep sends the due ones, a
bounded batch per tick, and records each attempt (time, HTTP status or error, duration). A 2xx
ends it delivered; anything else is tried again after `backoff(tries)` (1 s, 4 s, 16 s, ...,
at most an hour), up to `MAX_TRIES`, then it ends failed. Only the 4xx that may change with
time (408, 429) are retried among client errors; another 4xx means the receiver refuses it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from enum import StrEnum

from pydantic import Field

from skypanda.domain.notifications import WebhookUrl
from skypanda.domain.values import Strict

MAX_TRIES = 8
MAX_BACKOFF_S = 3600.0
MAX_WEBHOOKS_PER_OWNER = 20
MAX_BODY_BYTES = 64 * 1024
"""A notification's body is far smaller; bigger ones are refused (never sent truncated)."""
TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 4096
"""At most this much of a receiver's answer is read (and the first 200 characters kept)."""
SIGNATURE_HEADER = "Skypanda-Signature"


class DeliveryState(StrEnum):
    PENDING = "pending"  # due at `next_at`
    DELIVERED = "delivered"  # a 2xx answered
    FAILED = "failed"  # out of tries, or refused (a 4xx other than 408/429)


SUBJECT_PATTERN = r"^(tasks|workflows)/[^/\s]{1,200}$"


class Webhook(Strict):
    """A URL an owner registered: every notification about their tasks and workflows is
    POSTed to it; or, with a `subject` (`tasks/<id>`, `workflows/<id>`), only those about that
    one, as if it were in its `notify:` list (`applies`)."""

    id: str
    owner: str
    url: WebhookUrl
    created_at: float
    subject: str | None = Field(default=None, pattern=SUBJECT_PATTERN)

    def applies(self, scopes: Iterable[str]) -> bool:
        """Whether a notification whose `notify:` lists are those of `scopes` (the subjects
        of the task, and of its workflow when it opted in) comes here."""
        return self.subject is None or self.subject in scopes


class DeliveryAttempt(Strict):
    at: float
    status: int | None = None  # the HTTP status, or None when no answer came
    error: str = ""
    duration_s: float = 0.0


class Delivery(Strict):
    """One notification to one URL, with its attempts so far."""

    id: str
    owner: str
    url: WebhookUrl
    event_id: str
    subject: str  # tasks/<id> or workflows/<id>
    headers: dict[str, str]  # the CloudEvent binary-mode headers (not the signature)
    body: str = Field(max_length=MAX_BODY_BYTES)
    state: DeliveryState = DeliveryState.PENDING
    next_at: float
    created_at: float
    attempts: list[DeliveryAttempt] = Field(default_factory=list, max_length=MAX_TRIES)


def backoff(tries: int, *, base: float = 1.0, factor: float = 4.0) -> float:
    """Seconds to wait after the `tries`-th failed attempt: base * factor**(tries-1), at most
    an hour (1, 4, 16, 64, 256, 1024, 3600 s with the defaults)."""
    return float(min(MAX_BACKOFF_S, base * factor ** max(0, tries - 1)))


def retryable(status: int | None) -> bool:
    """Whether an answer (None: no answer) is worth trying again."""
    return status is None or status >= 500 or status in (408, 429)


def outcome(status: int | None, tries: int) -> DeliveryState:
    """The delivery's state after an attempt answered `status`, `tries` attempts in all:
    delivered, pending (to be tried again), or failed."""
    if status is not None and 200 <= status < 300:
        return DeliveryState.DELIVERED
    if retryable(status) and tries < MAX_TRIES:
        return DeliveryState.PENDING
    return DeliveryState.FAILED


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `Skypanda-Signature` header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"
