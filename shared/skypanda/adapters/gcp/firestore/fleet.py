"""FleetStore on Firestore: queues, pilots (heartbeats, sweeps' queries), the scaler's notes
(one small document per queue) and the fleet's marks (`fleet`: the sweep's pulse, one small
document written once per tick; a document per queue whose back-off an admin reset)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud.firestore_v1.base_query import FieldFilter

from skypanda.adapters.gcp.firestore import codec
from skypanda.adapters.gcp.firestore.base import (
    FirestoreBase,
    count,
    count_cores,
    eq,
    fields,
    is_in,
    where,
)
from skypanda.domain.errors import InvalidInput, NotFound
from skypanda.domain.models import Pilot, Queue
from skypanda.domain.scaling import Work
from skypanda.domain.states import JOB_LIVE, PILOT_FINAL, PILOT_LIVE, PilotStatus
from skypanda.ports.fleet import SweepMark


class FleetPart(FirestoreBase):
    """The `queues`, `pilots`, `scaler` and `fleet` collections."""

    # -- queues ------------------------------------------------------------------------------------
    def put_queue(self, queue: Queue) -> None:
        with self._backend("put_queue"):
            self._queues.document(queue.name).set(codec.queue_doc(queue))

    def get_queue(self, name: str) -> Queue:
        doc = self._read("get_queue", self._queues.document(name))
        if doc is None:
            raise NotFound(f"no queue named {name!r}", queue=name)
        return codec.queue_from(doc)

    def list_queues(self) -> list[Queue]:
        return [
            codec.queue_from(fields(s))
            for s in self._stream("list_queues", self._queues.order_by("name"))
        ]

    def count_failed_pilots(self, queue: str, since: float) -> int:
        failed = {str(PilotStatus.MISSED), str(PilotStatus.FAILED)}
        query = where(
            self._pilots, eq("queue", queue), is_in("status", failed),
            FieldFilter("ended_at", ">=", since),
        )  # fmt: skip
        with self._backend("count_failed_pilots"):
            return count(query)

    def note_scaling(self, queue: str, note: str, at: float) -> None:
        with self._backend("note_scaling"):
            self._scaler.document(queue).set({"note": note, "at": at})

    def scaling_notes(self) -> dict[str, tuple[str, float]]:
        snaps = self._stream("scaling_notes", self._scaler)
        return {s.id: (str(fields(s)["note"]), float(fields(s)["at"])) for s in snaps}

    # -- marks -------------------------------------------------------------------------------------
    def _mark(self, name: str) -> Any:
        return self._db.collection(self.collection("fleet")).document(name)

    def reset_backoff(self, queue: str, at: float) -> None:
        with self._backend("reset_backoff"):
            self._mark(f"backoff:{queue}").set({"reset_at": at})

    def backoff_reset_at(self, queue: str) -> float | None:
        doc = self._read("backoff_reset_at", self._mark(f"backoff:{queue}"))
        return None if doc is None else float(doc["reset_at"])

    def last_sweep(self) -> SweepMark | None:
        doc = self._read("last_sweep", self._mark("sweep"))
        return None if doc is None else SweepMark(**doc)

    def mark_sweep(self, mark: SweepMark) -> None:
        with self._backend("mark_sweep"):
            self._mark("sweep").set(dataclasses.asdict(mark))

    # -- pilots ------------------------------------------------------------------------------------
    def add_pilot(self, pilot: Pilot) -> None:
        with self._backend("add_pilot"):
            try:
                self._pilots.document(pilot.id).create(codec.pilot_doc(pilot))
            except gexc.AlreadyExists as e:
                raise InvalidInput(f"pilot id {pilot.id} already exists", pilot_id=pilot.id) from e

    def get_pilot(self, pilot_id: str) -> Pilot:
        doc = self._read("get_pilot", self._pilots.document(pilot_id))
        if doc is None:
            raise NotFound(f"no pilot with id {pilot_id!r}", pilot_id=pilot_id)
        return codec.pilot_from(doc)

    def update_pilot(self, pilot: Pilot, expect: Iterable[PilotStatus]) -> bool:
        expected = {str(s) for s in expect}
        record = codec.pilot_doc(pilot, heard=False)  # heartbeat fields: `heartbeat` only
        ref = self._pilots.document(pilot.id)
        return self._cas("update_pilot", ref, lambda d: d["status"] in expected, record)

    def heartbeat(self, pilot_id: str, now: float) -> Pilot | None:
        """A read and a blind update of the pilot document only (never a job): no precondition,
        since racing a sweep that ends the pilot is harmless (the sweep's compare-and-set is on
        the status, which a heartbeat does not touch). The read gives the record back."""
        ref = self._pilots.document(pilot_id)
        found = self._read("heartbeat", ref)
        if found is None or found["status"] in {str(s) for s in PILOT_FINAL}:
            return None
        with self._backend("heartbeat"):
            ref.update({"heartbeat_at": now, "heard_at": now})
        return codec.pilot_from({**found, "heartbeat_at": now, "heard_at": now})

    def list_pilots(self, *, queue: str | None = None, live: bool = False) -> list[Pilot]:
        query = where(
            self._pilots,
            None if queue is None else eq("queue", queue),
            is_in("status", PILOT_LIVE) if live else None,
        )
        pilots = [codec.pilot_from(fields(s)) for s in self._stream("list_pilots", query)]
        return sorted(pilots, key=lambda p: (p.created_at, p.id))

    def silent_pilots(self, queue: str, heard_before: float) -> list[Pilot]:
        query = where(
            self._pilots,
            eq("queue", queue),
            is_in("status", PILOT_LIVE),
            FieldFilter("heard_at", "<", heard_before),
        )
        return [codec.pilot_from(fields(s)) for s in self._stream("silent_pilots", query)]

    def held_cores(self, queue: str) -> Work:
        """An aggregation (one billed read per 1,000 jobs counted), never a read of each job."""
        query = where(self._jobs, eq("queue", queue), is_in("status", JOB_LIVE))
        with self._backend("held_cores"):
            return count_cores(query)
