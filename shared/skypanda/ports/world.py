"""The world outside the stores: the bus, blob storage, pilot launchers, the clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from skypanda.domain.events import Event
from skypanda.domain.identity import Principal
from skypanda.domain.models import Job, Queue


class Bus(Protocol):
    """Publishes events that are not tied to one stored state change (nudges, ticks)."""

    def publish(self, events: Sequence[Event]) -> None: ...


class Blobs(Protocol):
    """Logs and outputs, by key (`logs/<job>/<attempt>.log`)."""

    def append(self, key: str, data: bytes) -> None: ...

    def read(self, key: str) -> bytes:
        """Raises NotFound."""

    def uri(self, key: str) -> str: ...


@dataclass(frozen=True)
class LaunchedPilot:
    pilot_id: str
    ref: str  # the launcher's own reference (pid, execution name, pod name)
    alive: bool
    exit_code: int | None = None


class Launcher(Protocol):
    """Starts, lists and stops pilots (Harvester's submitter and monitor)."""

    def launch(self, queue: Queue, pilot_id: str, job: Job | None = None) -> str:
        """Start a pilot for `queue` that will register as `pilot_id`; return the launcher's
        reference. With `job` (push mode), the pilot is started for that job alone, with the
        job's exact memory and cores."""

    def list(self) -> list[LaunchedPilot]: ...

    def stop(self, pilot_id: str) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""


class Identity(Protocol):
    """Who is asking: a bearer credential made into a principal (its name and roles)."""

    def authenticate(self, token: str) -> Principal:
        """Raises Unauthorized, saying why (unknown, revoked, expired ...)."""

    def pilot_credential(self, pilot_id: str) -> str | None:
        """A short-lived credential scoped to this pilot, or None when this identity issues
        none (the pilot goes on with the credential it registered with)."""
