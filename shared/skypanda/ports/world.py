"""The world outside the stores: the bus, blob storage, pilot launchers, the clock."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
        """The whole blob, in memory: for small ones only (see `stream`). Raises NotFound."""

    def stream(self, key: str, *, last: int | None = None) -> Iterator[bytes]:
        """The blob in chunks of at most STREAM_CHUNK bytes, as it is when read (a log may
        grow meanwhile): never held whole in memory. `last`: only its last `last` bytes.

        Raises:
            NotFound: when called, before the first chunk (so a caller can still answer 404).
        """

    def uri(self, key: str) -> str: ...


STREAM_CHUNK = 1024 * 1024
"""The most bytes `Blobs.stream` yields at once."""


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
