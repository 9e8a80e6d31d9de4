"""The in-process event router: delivers outbox events to the handlers as CloudEvents.

Delivery is at least once and survives restarts: an event is marked delivered only after its
handlers returned, so a crash in between redelivers it, and the handlers' compare-and-set
writes make the repeat harmless (each event's effects happen exactly once). A handler error
that retrying cannot fix (bad data, an unknown id) parks the event as dead; a retryable one
is tried again with backoff, up to `max_tries`, like a Pub/Sub subscription with a
dead-letter topic.
"""

from __future__ import annotations

import logging
import threading
import time

from skypanda.domain.errors import SkypandaError
from skypanda.domain.events import Event, EventType
from skypanda.handlers.envelope import to_cloudevent
from skypanda.handlers.routes import BATCH_ROUTES, ROUTES
from skypanda.handlers.services import Services
from skypanda.ports import Store, StoredEvent

log = logging.getLogger(__name__)


class Router:
    def __init__(
        self, svc: Services, store: Store, *, batch: int = 500, max_tries: int = 5
    ) -> None:
        self._svc = svc
        self._store = store
        self._batch = batch
        self._max_tries = max_tries
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = 0

    def nudge(self) -> None:
        """Called by the store after a commit that wrote events."""
        self._wake.set()

    def deliver(self, event: Event) -> None:
        """Deliver one event to its handlers now (ticks are delivered this way, not stored)."""
        cloud_event = to_cloudevent(event)
        for handler in ROUTES[event.type]:
            handler(self._svc, cloud_event)

    def drain(self) -> int:
        """Deliver pending events until none is left; returns how many were delivered."""
        total = 0
        while not self._stop.is_set():
            pending = self._store.pending_events(self._batch)
            if not pending:
                break
            total += self._deliver_batch(pending)
        return total

    def _deliver_batch(self, pending: list[StoredEvent]) -> int:
        done: list[int] = []
        for run in _runs(pending):
            if len(run) > 1 and self._deliver_run(run):
                done.extend(s.seq for s in run)
                continue
            ok = self._deliver_each(run, done)
            if not ok:
                break  # keep order: retry the failed event before later ones
        self._store.mark_delivered(done, self._svc.clock.now())
        self.delivered += len(done)
        if len(done) < len(pending):
            time.sleep(0.05)  # back off a little before retrying a failed event
        return len(done)

    def _deliver_run(self, run: list[StoredEvent]) -> bool:
        """A run of events of one batchable type in one call; False: deliver them one by one
        (a batch that fails says nothing about which event is at fault)."""
        handler = BATCH_ROUTES[run[0].event.type]
        try:
            handler(self._svc, [to_cloudevent(s.event) for s in run])
        except Exception as e:
            log.info(
                "batch of %d %s events failed (%s); one by one", len(run), run[0].event.type, e
            )
            return False
        return True

    def _deliver_each(self, run: list[StoredEvent], done: list[int]) -> bool:
        for stored in run:
            try:
                self.deliver(stored.event)
            except SkypandaError as e:
                dead = not e.retryable or stored.tries + 1 >= self._max_tries
                log.warning(
                    "event %s failed (%s)%s", stored.event.id, e.message, " (dead)" if dead else ""
                )
                self._store.mark_failed(stored.seq, e.message, dead=dead)
                if not dead:
                    return False
            except Exception as e:  # a bug in a handler must not stop the router
                log.exception("event %s: handler crashed", stored.event.id)
                self._store.mark_failed(stored.seq, f"{type(e).__name__}: {e}", dead=True)
            else:
                done.append(stored.seq)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            try:
                self.drain()
            except SkypandaError as e:
                log.error("router: %s", e.message)
                time.sleep(0.5)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="skypanda-router", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def _runs(pending: list[StoredEvent]) -> list[list[StoredEvent]]:
    """Split events into runs: consecutive batchable events of one type, or single events."""
    runs: list[list[StoredEvent]] = []
    for stored in pending:
        kind = stored.event.type
        if runs and kind in BATCH_ROUTES and runs[-1][-1].event.type == kind:
            runs[-1].append(stored)
        else:
            runs.append([stored])
    return runs


def tick_event(now: float) -> Event:
    return Event(id=f"tick:{now:.3f}", type=EventType.TICK, subject="ticks", data={})
