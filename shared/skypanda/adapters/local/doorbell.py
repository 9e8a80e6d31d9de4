"""The Doorbell port in one process: a ring count and a condition per queue.

The embedded store rings it after a commit that activated jobs (`SqliteDb.on_activated`), so
a pilot's long-poll acquire returns as soon as a job is activated on its queue, whoever
activated it (a submit's split, a release, a retry, a resume). Waiters are capped: each holds
one of the HTTP server's threads, and a server whose threads all wait could not hear the
heartbeats and reports that end the waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable


class LocalDoorbell:
    """Ring counts per queue under one lock; `max_waiters` waits at once at most."""

    def __init__(self, max_waiters: int) -> None:
        if max_waiters < 0:
            raise ValueError(f"max_waiters must be >= 0, not {max_waiters}")
        self.max_waiters = max_waiters
        self._cond = threading.Condition()
        self._rings: dict[str, int] = {}
        self._waiting = 0
        self._closed = False

    @property
    def waiting(self) -> int:
        """How many waits are under way."""
        with self._cond:
            return self._waiting

    def seen(self, queue: str) -> int:
        with self._cond:
            return self._rings.get(queue, 0)

    def ring(self, queues: Iterable[str]) -> None:
        with self._cond:
            self._ring_locked(queues)

    def _ring_locked(self, queues: Iterable[str]) -> None:
        """Count a ring on each queue and wake the waiters (the lock held)."""
        for queue in queues:
            self._rings[queue] = self._rings.get(queue, 0) + 1
        self._cond.notify_all()

    def wait(self, queue: str, seen: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._rings.get(queue, 0) != seen:
                return True
            if self._closed or self._waiting >= self.max_waiters or timeout <= 0:
                return False
            self._waiting += 1
            try:
                while self._rings.get(queue, 0) == seen and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
                return not self._closed
            finally:
                self._waiting -= 1

    def close(self) -> None:
        """End every wait now and refuse new ones (the server is stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
