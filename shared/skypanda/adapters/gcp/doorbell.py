"""The Doorbell port on Firestore: a snapshot listener per queue, open only while an acquire of
this process (a function instance) waits on that queue.

Google Cloud runs the dispatch function on many instances, so an activation cannot ring a bell
in memory; Firestore tells instead. While at least one long-poll of this instance waits on a
queue, one listener (shared by every waiter of the queue here) follows the query "jobs of the
queue, activated, limit 1"; a job that enters that result rings the queue's bell, and one
waiter of the queue looks for work again (`dispatch.acquire`; one wake per job, as
`LocalDoorbell`): when it takes the job, the next activated job, if any, enters the head
and wakes the next waiter. The last waiter to leave closes
the listener, in its own request: nothing is left listening while the instance is idle (a
Cloud Functions instance gets CPU only while it serves requests, and a listener left open would
be billed reads for changes nobody waits for).

Why a listener with `limit(1)` rather than polling or a listener on every activated job: a
listener is billed one read per document that enters, changes in or leaves its result (and at
least one when it opens); `limit(1)` bounds that to about two reads per change of the queue's
head, however many jobs a release activates or a claim takes at once, and to nothing while the
queue stays empty. Polling would bill a read per poll per instance whether anything happens or
not, and wake a waiter only at the next poll. See infra/FIRESTORE.md ("Long-poll acquires").

The result holds one job: a job that stays activated because it fits none of the waiting
pilots hides jobs activated behind it (in document id order) from the listener, and their
waiters then find them only at the end of their wait, when the pilot asks again (the
long-poll degrades to polling, never loses a job); so do the waiters of a listener the client
ended (the server cancelled its stream), until the next waiter of its queue replaces it. The
first snapshot of a listener rings only
for a job updated within `fresh_s` of the listener's start: one activated between a waiter's
look and the listener's start (a ring that would otherwise be lost), not one that has waited
for long (which a waiter looked at, and could not take, just before). A ring whose job has
left the head again by the time the waiter wakes (claimed in the very request that released
it, as a chain's child is) does not end the wait: the waiter would pay a look for nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from google.cloud.firestore_v1.base_query import FieldFilter

from skypanda.adapters.local.doorbell import LocalDoorbell, QueueBell

log = logging.getLogger(__name__)

ACTIVATED = "activated"


@dataclass
class _Listener:
    watch: Any  # google.cloud.firestore_v1.watch.Watch, once opened
    waiters: int
    started: float  # wall clock (the documents' update times are wall clock too)
    first: bool = True  # its first snapshot is still to come
    empty: bool = False  # its last snapshot showed no activated job


class FirestoreDoorbell(LocalDoorbell):
    """Ring counts and wakes per queue under one lock (`LocalDoorbell`'s), rung by Firestore
    listeners opened on demand: one wake per job that enters a queue's head.

    `max_waiters` waits at once at most (a function instance serves a bounded number of
    requests at once: waits beyond leave room for reports and heartbeats). `reads` counts what
    the listeners are billed (for `skypanda bench cost`): one read per document delivered in a
    change, and at least one per listener opened.
    """

    def __init__(
        self,
        jobs: Any,
        *,
        max_waiters: int,
        fresh_s: float = 1.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(max_waiters)
        self._jobs = jobs  # the jobs CollectionReference
        self._fresh_s = fresh_s
        self._wall = wall
        self._listeners: dict[str, _Listener] = {}
        self.reads = 0
        self.opened = 0

    @property
    def listening(self) -> list[str]:
        """The queues a listener follows now."""
        with self._lock:
            return sorted(self._listeners)

    def ring(self, queues: Mapping[str, int] | Iterable[str]) -> None:
        with self._lock:
            queues = queues if isinstance(queues, Mapping) else list(queues)
            for queue in queues:
                if (listener := self._listeners.get(queue)) is not None:
                    listener.empty = False
            self._ring_locked(queues)

    def wait(self, queue: str, seen: int, timeout: float) -> bool:
        self.before_wait()
        deadline = time.monotonic() + timeout
        with self._lock:
            bell = self._enter(queue, seen, timeout)
            if isinstance(bell, bool):
                return bell
            listener = self._listeners.get(queue)
            if listener is not None and listener.watch is not None and not listener.watch.is_active:
                # The client ended it (the server cancelled its stream: a listener ends for
                # good then): its waiters would hear nothing more; a new one replaces it.
                del self._listeners[queue]
                listener = None
            opener = listener is None  # the first waiter opens the queue's listener
            if listener is None:
                listener = self._listeners[queue] = _Listener(None, 0, self._wall())
            listener.waiters += 1
        try:
            if opener and not self._open(queue, listener):
                return False
            with self._lock:
                # (a wake whose job left the head before this waiter woke, e.g. claimed in
                # the very request that released it, is dropped: waking would only pay a look
                # for nothing)
                return self._wait_woken(bell, deadline, lambda: self._head_held(queue))
        finally:
            self._leave(queue, listener, bell)

    def _head_held(self, queue: str) -> bool:
        """Whether the queue's head held a job at its listener's last word (the listener now
        following the queue: a waiter of one that was replaced listens through the new one).
        Called with the lock held."""
        current = self._listeners.get(queue)
        return current is None or not current.empty

    def _open(self, queue: str, listener: _Listener) -> bool:
        """Start following the queue's head (outside the lock: the listener's thread takes it
        to ring). False if Firestore refused: the wait answers at once, as with no doorbell
        (the pilot asks again later; its acquire does not fail for it)."""
        query = (
            self._jobs.where(filter=FieldFilter("queue", "==", queue))
            .where(filter=FieldFilter("status", "==", ACTIVATED))
            .limit(1)
        )
        try:
            watch = query.on_snapshot(lambda docs, changes, _at: self._heard(queue, docs, changes))
        except Exception as e:  # the client raises many kinds; waiting is an optimisation
            log.warning("doorbell: cannot listen on queue %s: %s", queue, e)
            return False
        with self._lock:
            listener.watch = watch
            self.opened += 1
        return True

    def _heard(self, queue: str, docs: Any, changes: Any) -> None:
        """A snapshot of the queue's head: ring if a job entered it (the first snapshot: only
        a job updated since just before the listener opened)."""
        with self._lock:
            listener = self._listeners.get(queue)
            first = listener is not None and listener.first
            if listener is not None:
                listener.first = False
                listener.empty = not docs
            # Billed: each document delivered; a listener's first result, one at least.
            self.reads += max(len(changes), 1 if first else 0)
            entered = [c.document for c in changes if c.type.name == "ADDED"]
            if first and listener is not None:
                since = listener.started - self._fresh_s
                entered = [d for d in entered if _updated(d) >= since]
            if entered:
                self._ring_locked([queue])

    def _leave(self, queue: str, listener: _Listener, bell: QueueBell) -> None:
        with self._lock:
            self._leave_locked(bell)
            listener.waiters -= 1
            if listener.waiters > 0 or self._listeners.get(queue) is not listener:
                return
            del self._listeners[queue]
            watch = listener.watch
        if watch is not None:
            _unsubscribe(watch)


def _updated(doc: Any) -> float:
    """A snapshot's update time, in seconds since the epoch."""
    at = getattr(doc, "update_time", None)
    return float(at.timestamp()) if at is not None else 0.0


def _unsubscribe(watch: Any) -> None:
    try:
        watch.unsubscribe()
    except Exception:  # closing a stream that already broke: nothing left to close
        log.debug("doorbell listener: unsubscribe failed", exc_info=True)
