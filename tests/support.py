"""Test helpers shared by several suites: a clock that moves only when told, and the embedded
services on a temporary SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from skypanda.adapters.local.bus import OutboxBus
from skypanda.adapters.local.files import FileBlobs
from skypanda.adapters.local.sqlite import SqliteStore
from skypanda.domain.models import Queue
from skypanda.handlers.services import Services

T0 = 1_700_000_000.0


class FakeClock:
    """A clock that moves only when told to (`now()` is the Clock port)."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def set(self, t: float) -> None:
        self.t = t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t


@contextmanager
def sqlite_services(tmp_path: Path, clock: FakeClock, queue: Queue) -> Iterator[Services]:
    """Services on a fresh SQLite store and file blobs, with `queue` defined; closed after."""
    store = SqliteStore(tmp_path / "db.sqlite", clock=clock.now)
    store.put_queue(queue)
    try:
        yield Services(
            store=store, bus=OutboxBus(store), blobs=FileBlobs(tmp_path / "b"), clock=clock
        )
    finally:
        store.close()
