"""The local Bus: events go to the SQLite outbox; the router delivers them."""

from __future__ import annotations

from collections.abc import Sequence

from skypanda.adapters.local.sqlite import SqliteStore
from skypanda.domain.events import Event


class OutboxBus:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def publish(self, events: Sequence[Event]) -> None:
        self._store.add_events(events)
