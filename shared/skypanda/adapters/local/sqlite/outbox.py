"""Outbox on SQLite: the `outbox` table, written in the same transaction as each change
(`SqliteDb._emit`), read and marked by the router."""

from __future__ import annotations

import json
from collections.abc import Sequence

from skypanda.adapters.local.sqlite.db import SqliteDb
from skypanda.domain.events import Event, EventType
from skypanda.ports import StoredEvent


class SqliteOutbox(SqliteDb):
    def add_events(self, events: Sequence[Event]) -> None:
        with self._tx() as db:
            emitted = self._emit(db, events)
        if emitted:
            self.on_events()

    def pending_events(self, limit: int) -> list[StoredEvent]:
        return self._stored(
            "SELECT seq, id, type, subject, data, tries FROM outbox "
            "WHERE delivered_at IS NULL AND dead = 0 ORDER BY seq LIMIT ?",
            (limit,),
        )

    def lost_events(self, sent_before: float, limit: int) -> list[StoredEvent]:
        return self._stored(
            "SELECT seq, id, type, subject, data, tries FROM outbox "
            "WHERE delivered_at IS NULL AND dead = 0 AND COALESCE(resent_at, created_at) < ? "
            "ORDER BY seq LIMIT ?",
            (sent_before, limit),
        )

    def _stored(self, sql: str, args: tuple[object, ...]) -> list[StoredEvent]:
        rows = self._read(sql, args)
        return [
            StoredEvent(
                seq=r["seq"],
                event=Event(
                    id=r["id"],
                    type=EventType(r["type"]),
                    subject=r["subject"],
                    data=json.loads(r["data"]),
                ),
                tries=r["tries"],
            )
            for r in rows
        ]

    def mark_delivered(self, seqs: Sequence[int], now: float) -> None:
        if not seqs:
            return
        with self._tx() as db:
            db.executemany(
                "UPDATE outbox SET delivered_at = ?, tries = tries + 1 WHERE seq = ?",
                [(now, s) for s in seqs],
            )

    def mark_handled(self, event_ids: Sequence[str], now: float) -> None:
        if not event_ids:
            return
        with self._tx() as db:
            db.executemany(
                "UPDATE outbox SET delivered_at = ?, tries = tries + 1 "
                "WHERE id = ? AND delivered_at IS NULL",
                [(now, i) for i in event_ids],
            )

    def mark_resent(self, event_ids: Sequence[str], now: float) -> None:
        if not event_ids:
            return
        with self._tx() as db:
            db.executemany(
                "UPDATE outbox SET resent_at = ?, tries = tries + 1 WHERE id = ?",
                [(now, i) for i in event_ids],
            )

    def mark_released(self, event_ids: Sequence[str]) -> None:
        """Nothing to keep: this store commits a report's release with the report (dispatch
        flags no event `in_request` here)."""

    def mark_failed(self, seq: int, error: str, *, dead: bool) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET tries = tries + 1, error = ?, dead = ? WHERE seq = ?",
                (error[:2000], int(dead), seq),
            )

    def dead_events(self) -> list[tuple[str, str]]:
        """(event id, error) of events parked after failing delivery: for `skypanda doctor`."""
        return [
            (r["id"], r["error"]) for r in self._read("SELECT id, error FROM outbox WHERE dead = 1")
        ]
