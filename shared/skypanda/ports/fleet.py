"""FleetStore: queues, pilots, the scaler's notes and the sweep's mark."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from skypanda.domain.models import Pilot, Queue
from skypanda.domain.scaling import Work
from skypanda.domain.states import PilotStatus


@dataclass(frozen=True)
class SweepMark:
    """When the sweep last ran, how often it usually runs, and the server's last outage.

    The sweep is the server's pulse: a gap between two sweeps much longer than their usual
    cadence means the server itself was down (stopped, restarted, unreachable), and pilots
    silent across that gap are not to blame (handlers.sweep).

    Attributes:
        swept_at: when the sweep last ran.
        cadence_s: the usual time between two sweeps (None until two were seen).
        down_since: the last sweep before the server's last outage (None: none seen).
        resumed_at: the first sweep after it.
    """

    swept_at: float
    cadence_s: float | None = None
    down_since: float | None = None
    resumed_at: float | None = None


class FleetStore(Protocol):
    """Queues, pilots and the scaler's last decisions."""

    def put_queue(self, queue: Queue) -> None: ...

    def get_queue(self, name: str) -> Queue:
        """Raises NotFound."""

    def list_queues(self) -> list[Queue]: ...

    def count_failed_pilots(self, queue: str, since: float) -> int:
        """Pilots of the queue that ended missed or failed at or after `since` (back-off).
        Disconnected pilots (the server was unreachable) are not counted."""

    def reset_backoff(self, queue: str, at: float) -> None:
        """Pilots of the queue that failed before `at` no longer count for its back-off."""

    def backoff_reset_at(self, queue: str) -> float | None:
        """When the queue's back-off was last reset (None: never)."""

    def last_sweep(self) -> SweepMark | None:
        """The mark the last sweep left (None: no sweep ever ran)."""

    def mark_sweep(self, mark: SweepMark) -> None:
        """Record this sweep's mark (replacing the last one)."""

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

    def held_cores(self, queue: str) -> Work:
        """Jobs of the queue that pilots hold now (sent, starting or running), and the cores
        they ask for: with the slots and cores of its running pilots, what the scaler knows of
        how many of them are free. One aggregation, never a read of each job."""
