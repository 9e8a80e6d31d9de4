"""Outbox: the events written with state changes, until they are delivered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from skypanda.domain.events import Event


@dataclass(frozen=True)
class StoredEvent:
    """An outbox entry: an event, and how many times delivery was tried."""

    seq: int
    event: Event
    tries: int


class Outbox(Protocol):
    """The transactional outbox (events stored in the same commit as the change)."""

    def add_events(self, events: Sequence[Event]) -> None:
        """Append events to the outbox (ignoring ones whose id is already there)."""

    def pending_events(self, limit: int) -> list[StoredEvent]:
        """Undelivered events, oldest first."""

    def mark_delivered(self, seqs: Sequence[int], now: float) -> None: ...

    def mark_failed(self, seq: int, error: str, *, dead: bool) -> None:
        """Count a failed delivery; a dead event is parked (not redelivered) with its error."""

    def mark_handled(self, event_ids: Sequence[str], now: float) -> None:
        """Events a transport delivered by id (Cloud Functions) were handled: they are no longer
        pending and expire after a retention (Firestore's TTL deletes them). Ids not in the
        outbox are ignored."""

    def lost_events(self, sent_before: float, limit: int) -> list[StoredEvent]:
        """Unhandled events last sent (created or re-sent) before `sent_before`, oldest first:
        the ones a transport may have lost, to send again; and job.ended events flagged
        `in_request` whose request never said their children released (`mark_released`),
        without the flag (sent again, they are released in full)."""

    def mark_released(self, event_ids: Sequence[str]) -> None:
        """The children of these job.ended events (flagged `in_request`) were released in
        their report's request. Ids not in the outbox are ignored."""

    def mark_resent(self, event_ids: Sequence[str], now: float) -> None:
        """The events were sent again now (counted in their tries)."""
