"""Outbox on Firestore: the `events` collection. Events are written by every part in the
same commit as their change (`base`); this part adds events on their own, lists the pending
ones in `seq` order and records deliveries. Sequence numbers: `plans.SeqSource`.

On Google Cloud events are delivered by id (Eventarc on creation, Pub/Sub), and the functions
mark each one handled (`mark_handled`: one write, no read). A handled event gets `expire_at`, a
Timestamp HANDLED_RETENTION_S later, on which the deployment's TTL policy deletes it; an event
never handled has none and stays until the sweep re-sends it (`lost_events`, `mark_resent`).

A job.ended whose children its report's request releases (flagged `in_request`: the
`release` function skips them) is stored with `released: false` until that request says it
is done (`mark_released`: one write, no read). One it never says so of (the request died
between the report's commit and the release) is found by `lost_events` and sent again
without the flag: its delivery releases the children in full."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from skypanda.adapters.gcp.firestore import codec
from skypanda.adapters.gcp.firestore.base import FirestoreBase, Snapshot, eq, fields, where
from skypanda.adapters.gcp.firestore.plans import SEQS
from skypanda.domain.events import Event
from skypanda.ports import StoredEvent

HANDLED_RETENTION_S = 7 * 86400
"""How long a handled event is kept (for inspection) before Firestore's TTL deletes it."""


STRANDED_SLACK = 100
"""How many flagged job.ended events under way `lost_events` reads past its limit (they come
in no order: a query of one equality needs no composite index)."""


def _resent(s: Snapshot) -> StoredEvent:
    """An outbox document as an event to send again: without `in_request` (whoever sends it
    again does not know whether its request released the children: they are released in
    full, which finds them released if they were)."""
    event = codec.event_from(s.id, fields(s))
    if "in_request" in event.data:
        data = {k: v for k, v in event.data.items() if k != "in_request"}
        event = replace(event, data=data)
    return StoredEvent(seq=s.get("seq"), event=event, tries=s.get("tries"))


def expire_at(now: float) -> dt.datetime:
    """The TTL field's value for an event handled at `now` (a Timestamp, as TTL requires)."""
    return dt.datetime.fromtimestamp(now + HANDLED_RETENTION_S, tz=dt.UTC)


class OutboxPart(FirestoreBase):
    """The `events` collection."""

    def add_events(self, events: Sequence[Event]) -> None:
        """Create the events in one commit, with no read (an activation's event, written on
        the critical path of a chain: one round trip, not a transaction's three); if one is
        stored already (a handler run again), that commit writes nothing and a transaction
        adds the missing ones."""
        if not events:
            return
        unique = list({e.id: e for e in events}.values())
        batch = self._db.batch()
        now = self._clock()
        for e in unique:
            batch.create(self._events.document(e.id), codec.event_doc(e, SEQS.next(), now))
        stored = False
        with self._backend("add_events"):
            try:
                batch.commit()
                stored = True
            except (gexc.AlreadyExists, gexc.Conflict):
                pass  # an event is stored already: nothing was written
        if not stored:
            put = lambda tx: self._put_events(tx, self._unstored(tx, unique))  # noqa: E731
            self._transact("add_events", put)
        self.on_events()

    def pending_events(self, limit: int) -> list[StoredEvent]:
        query = where(self._events, eq("delivered", False), eq("dead", False))
        query = query.order_by("seq").limit(limit)
        return [
            StoredEvent(
                seq=s.get("seq"), event=codec.event_from(s.id, fields(s)), tries=s.get("tries")
            )
            for s in self._stream("pending_events", query)
        ]

    def lost_events(self, sent_before: float, limit: int) -> list[StoredEvent]:
        query = where(
            self._events, eq("delivered", False), eq("dead", False),
            FieldFilter("sent_at", "<", sent_before),
        )  # fmt: skip
        lost = self._stream("lost_events", query.order_by("sent_at").limit(limit))
        # Releases their requests never said done. The query has only an equality (a single
        # field index): it returns the releases under way too (a few: one per report being
        # answered), left out here by their age.
        unsaid = self._stream("lost_events", self._events.where(filter=eq("released", False))
                              .limit(limit + STRANDED_SLACK))  # fmt: skip
        seen = {s.id for s in lost}
        stranded = [s for s in unsaid if s.get("sent_at") < sent_before and s.id not in seen]
        snaps = sorted([*lost, *stranded], key=lambda s: s.get("sent_at"))
        return [_resent(s) for s in snaps[:limit]]

    def mark_released(self, event_ids: Sequence[str]) -> None:
        self._update_each("mark_released", event_ids, {"released": True})

    def mark_handled(self, event_ids: Sequence[str], now: float) -> None:
        change = {
            "delivered": True, "delivered_at": now, "expire_at": expire_at(now),
            "tries": firestore.Increment(1),
        }  # fmt: skip
        self._update_each("mark_handled", event_ids, change)

    def mark_resent(self, event_ids: Sequence[str], now: float) -> None:
        # (sent without the flag: released in full, nothing left for a request to say)
        change = {"sent_at": now, "tries": firestore.Increment(1), "released": True}
        self._update_each("mark_resent", event_ids, change)

    def _update_each(self, what: str, event_ids: Sequence[str], change: dict[str, object]) -> None:
        """Update each event by id: one write each, no read; ids not in the outbox are skipped."""
        for event_id in dict.fromkeys(event_ids):
            with self._backend(what), contextlib.suppress(gexc.NotFound):
                self._events.document(event_id).update(change)

    def _by_seq(self, what: str, seqs: Sequence[int]) -> list[Snapshot]:
        found: list[Snapshot] = []
        unique = sorted(set(seqs))
        for start in range(0, len(unique), codec.IN_LIMIT):
            chunk = unique[start : start + codec.IN_LIMIT]
            query = self._events.where(filter=FieldFilter("seq", "in", chunk)).select([])
            found.extend(self._stream(what, query))
        return found

    def mark_delivered(self, seqs: Sequence[int], now: float) -> None:
        snaps = self._by_seq("mark_delivered", seqs)
        change = {
            "delivered": True, "delivered_at": now, "expire_at": expire_at(now),
            "tries": firestore.Increment(1),
        }  # fmt: skip
        for start in range(0, len(snaps), codec.MAX_WRITES):
            batch = self._db.batch()
            for s in snaps[start : start + codec.MAX_WRITES]:
                batch.update(s.reference, change)
            with self._backend("mark_delivered"):
                batch.commit()

    def mark_failed(self, seq: int, error: str, *, dead: bool) -> None:
        change = {"tries": firestore.Increment(1), "error": error[:2000], "dead": dead}
        for s in self._by_seq("mark_failed", [seq]):
            with self._backend("mark_failed"):
                s.reference.update(change)

    def dead_events(self) -> list[tuple[str, str]]:
        """(event id, error) of events parked after failing delivery: for `skypanda doctor`."""
        query = self._events.where(filter=eq("dead", True))
        return [(s.id, s.get("error")) for s in self._stream("dead_events", query)]
