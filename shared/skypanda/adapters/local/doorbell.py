"""The Doorbell port in one process: a ring count, wakes owed and a condition per queue.

The embedded store rings it after a commit that activated jobs (`SqliteDb.on_activated`), so
a pilot's long-poll acquire returns as soon as a job is activated on its queue, whoever
activated it (a submit's split, a release, a retry, a resume). Waiters are capped: each holds
one of the HTTP server's threads, and a server whose threads all wait could not hear the
heartbeats and reports that end the waits.

One wake per job: a ring of n jobs wakes at most n of the queue's waiters (the others wait
on), not all of them: a chain's child, activated while a dozen pilots wait, costs one look
for work, not a dozen that all but one find empty-handed (on Google Cloud each look is a
billed read). A waiter that looked for work after a ring it did not wait for (the ring came
between its look and its wait: `seen`) still answers at once: that ring is never lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping


class QueueBell:
    """A queue's bell: rings so far, wakes owed to its waiters, and their condition."""

    def __init__(self, lock: threading.Lock) -> None:
        self.rings = 0
        self.owed = 0  # wakes a ring left for waiters: taken one each, never above `waiting`
        self.waiting = 0
        self.cond = threading.Condition(lock)


class LocalDoorbell:
    """Ring counts per queue under one lock; `max_waiters` waits at once at most."""

    def __init__(self, max_waiters: int) -> None:
        if max_waiters < 0:
            raise ValueError(f"max_waiters must be >= 0, not {max_waiters}")
        self.max_waiters = max_waiters
        self._lock = threading.Lock()
        self._queues: dict[str, QueueBell] = {}
        self._waiting = 0
        self._closed = False
        # Called as a wait starts, on the waiting thread (the embedded server lets its router
        # go: a request's held wake must not wait for the long-poll that follows its report).
        self.before_wait: Callable[[], None] = lambda: None

    @property
    def waiting(self) -> int:
        """How many waits are under way."""
        with self._lock:
            return self._waiting

    def seen(self, queue: str) -> int:
        with self._lock:
            bell = self._queues.get(queue)
            return bell.rings if bell is not None else 0

    def ring(self, queues: Mapping[str, int] | Iterable[str]) -> None:
        """Jobs became ready: a mapping queue -> how many, or queues (a queue once per job)."""
        with self._lock:
            self._ring_locked(queues)

    def _ring_locked(self, queues: Mapping[str, int] | Iterable[str]) -> None:
        """Count a ring on each queue and wake as many of its waiters as jobs became ready
        (the lock held)."""
        ready: dict[str, int] = {}
        if isinstance(queues, Mapping):
            ready = {q: n for q, n in queues.items() if n > 0}
        else:
            for queue in queues:
                ready[queue] = ready.get(queue, 0) + 1
        for queue, n in ready.items():
            bell = self._bell(queue)
            bell.rings += 1
            wake = min(n, bell.waiting - bell.owed)  # the waiters not owed a wake already
            if wake > 0:
                bell.owed += wake
                bell.cond.notify(wake)

    def _bell(self, queue: str) -> QueueBell:
        bell = self._queues.get(queue)
        if bell is None:
            bell = self._queues[queue] = QueueBell(self._lock)
        return bell

    def _enter(self, queue: str, seen: int, timeout: float) -> QueueBell | bool:
        """Start a wait (the lock held): the queue's bell, or the answer at once (True: it
        rang after `seen`; False: no room, closed or no time)."""
        bell = self._bell(queue)
        if bell.rings != seen:
            return True
        if self._closed or self._waiting >= self.max_waiters or timeout <= 0:
            return False
        self._waiting += 1
        bell.waiting += 1
        return bell

    def _leave_locked(self, bell: QueueBell) -> None:
        self._waiting -= 1
        bell.waiting -= 1
        bell.owed = min(bell.owed, bell.waiting)  # a wake owed to nobody is dropped

    def _woken(self, bell: QueueBell) -> bool:
        """Take a wake owed to the queue's waiters, if one is (the lock held)."""
        if bell.owed <= 0:
            return False
        bell.owed -= 1
        return True

    def wait(self, queue: str, seen: int, timeout: float) -> bool:
        self.before_wait()
        deadline = time.monotonic() + timeout
        with self._lock:
            bell = self._enter(queue, seen, timeout)
            if isinstance(bell, bool):
                return bell
            try:
                return self._wait_woken(bell, deadline)
            finally:
                self._leave_locked(bell)

    def _wait_woken(
        self, bell: QueueBell, deadline: float, worth: Callable[[], bool] = lambda: True
    ) -> bool:
        """Wait (the lock held) until a wake owed to the queue's waiters is taken and `worth`
        answering (else it is dropped), the deadline passes or the doorbell closes."""
        while not self._closed:
            if self._woken(bell) and worth():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            bell.cond.wait(left)
        return False

    def close(self) -> None:
        """End every wait now and refuse new ones (the server is stopping)."""
        with self._lock:
            self._closed = True
            for bell in self._queues.values():
                bell.cond.notify_all()
