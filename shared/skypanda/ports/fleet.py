"""FleetStore: queues, pilots and the scaler's notes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from skypanda.domain.models import Pilot, Queue
from skypanda.domain.states import PilotStatus


class FleetStore(Protocol):
    """Queues, pilots and the scaler's last decisions."""

    def put_queue(self, queue: Queue) -> None: ...

    def get_queue(self, name: str) -> Queue:
        """Raises NotFound."""

    def list_queues(self) -> list[Queue]: ...

    def count_failed_pilots(self, queue: str, since: float) -> int:
        """Pilots of the queue that ended missed or failed at or after `since` (back-off)."""

    def note_scaling(self, queue: str, note: str, at: float) -> None:
        """Record the scaler's last decision on a queue and why (for `skypanda queues`)."""

    def scaling_notes(self) -> dict[str, tuple[str, float]]:
        """Each queue's last scaling decision and when it was taken."""

    def add_pilot(self, pilot: Pilot) -> None: ...

    def get_pilot(self, pilot_id: str) -> Pilot:
        """Raises NotFound."""

    def update_pilot(self, pilot: Pilot, expect: Iterable[PilotStatus]) -> bool:
        """Compare-and-set write of a pilot record; False when its status was not in `expect`."""

    def heartbeat(self, pilot_id: str, now: float) -> Pilot | None:
        """Record a heartbeat (only the pilot record is written) and return the pilot's record
        (what the server wants of it: e.g. `drain`); None if the pilot has ended or is unknown."""

    def list_pilots(self, *, queue: str | None = None, live: bool = False) -> list[Pilot]: ...

    def silent_pilots(self, queue: str, heard_before: float) -> list[Pilot]:
        """Live pilots of the queue not heard from (heartbeat or start) since `heard_before`."""
