"""The in-process event router: the outbox transport of the event pipeline (embedded backend).

Delivery is at least once and survives restarts: an event is marked delivered only after its
handlers returned, so a crash in between redelivers it, and the handlers' compare-and-set
writes make the repeat harmless (each event's effects happen exactly once). What becomes of a
failing event is the pipeline's decision (`handlers.pipeline`), the same as on Google Cloud:
a dead event is parked in the outbox with its reason (the local dead letter), a retryable one
is tried again with backoff, in order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.wsgi import ClosingIterator

from skypanda.domain import events as ev
from skypanda.domain.errors import SkypandaError
from skypanda.domain.events import Event
from skypanda.handlers.pipeline import Outcome, Pipeline
from skypanda.ports import Outbox, StoredEvent

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)


SOON_S = 0.02
"""How long events that may wait (`nudge_soon`) wait for others to be delivered with them."""


class Router:
    def __init__(
        self, pipeline: Pipeline, outbox: Outbox, *, batch: int = 500, soon_s: float = SOON_S
    ) -> None:
        self.pipeline = pipeline
        self._store = outbox
        self._batch = batch
        self._soon_s = soon_s
        self._wake = threading.Event()  # the loop's signal: look at `_now` and `_due`
        self._lock = threading.Lock()
        self._now = False  # a pass is wanted at once
        self._due: float | None = None  # a pass is wanted by then (monotonic)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held = threading.local()
        self.delivered = 0

    def nudge(self) -> None:
        """Called by the store after a commit that wrote events. On a thread that `hold`s
        (a request not yet answered), the wake waits for its `let_go`."""
        self._nudge(soon=False)

    def nudge_soon(self) -> None:
        """Called by the store after a commit whose events may all wait a little (SOON_S): a
        report's job.ended, whose children its own request released (`dispatch.update`);
        what is left for the router is the task's rollup. A chain's links end every few
        milliseconds: their ends are then delivered a few at once (one read of the outbox,
        one mark, one rollup of their task) rather than each on its own pass.

        Only a request's commits wait (a thread that `hold`s, woken soon at its `let_go`):
        elsewhere this is `nudge`. The router's own commits are the next step of what it
        delivers (a failed job's children cancelled, whose ends cancel theirs, ...), which
        must not wait SOON_S a step."""
        self._nudge(soon=True)

    def _nudge(self, *, soon: bool) -> None:
        """Wake the router now, or note the wake for this thread's `let_go` if it holds."""
        held = self._held
        if not getattr(held, "on", False):
            self._signal(soon=False)
        elif soon:
            held.soon = True
        else:
            held.pending = True

    def _signal(self, *, soon: bool) -> None:
        with self._lock:
            if not soon:
                self._now = True
            elif self._due is None:
                self._due = time.monotonic() + self._soon_s
            else:
                return  # a pass is due already, as soon or sooner
        self._wake.set()

    def hold(self) -> None:
        """Hold this thread's nudges until `let_go`: a request's commits wake the router only
        once its reply is written, so the router's delivery (which takes the interpreter's lock
        for a while) does not delay the reply a pilot waits for. The events are committed
        already: holding delays their delivery, never loses it."""
        self._held.on = True

    def let_go(self) -> None:
        """End this thread's hold, waking the router if a nudge was held (idempotent)."""
        held = self._held
        held.on = False
        if getattr(held, "pending", False):
            held.pending = held.soon = False
            self._signal(soon=False)
        elif getattr(held, "soon", False):
            held.soon = False
            self._signal(soon=True)

    def deliver(self, event: Event) -> None:
        """Deliver one event to its handlers now (ticks are delivered this way, not stored);
        a failure is logged by the pipeline and not retried (the next tick comes anyway)."""
        self.pipeline.deliver(event, tries=self.pipeline.max_tries, transport="router")

    def deliver_once(self) -> int:
        """One pass over the pending events (each tried once); returns how many were
        delivered. `drain` repeats passes until nothing is left."""
        pending = self._store.pending_events(self._batch)
        return self._deliver_batch(pending) if pending else 0

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
        for run in _runs(self.pipeline, pending):
            if len(run) > 1 and self._deliver_run(run):
                done.extend(s.seq for s in run)
                continue
            ok = self._deliver_each(run, done)
            if not ok:
                break  # keep order: retry the failed event before later ones
        self._store.mark_delivered(done, self.pipeline.svc.clock.now())
        self.delivered += len(done)
        if len(done) < len(pending):
            time.sleep(0.05)  # back off a little before retrying a failed event
        return len(done)

    def _deliver_run(self, run: list[StoredEvent]) -> bool:
        """A run of events of one batchable type in one call; False: deliver them one by one
        (a batch that fails says nothing about which event is at fault)."""
        return self.pipeline.deliver_batch([s.event for s in run])

    def _deliver_each(self, run: list[StoredEvent], done: list[int]) -> bool:
        for stored in run:
            result = self.pipeline.deliver(stored.event, tries=stored.tries, transport="router")
            if result.outcome is Outcome.DELIVERED:
                done.append(stored.seq)
                continue
            dead = result.outcome is Outcome.DEAD
            self._store.mark_failed(stored.seq, result.reason, dead=dead)
            if not dead:
                return False
        return True

    def _pass(self) -> bool:
        """One read of the outbox and its delivery; whether to look again at once (the batch
        was full, or an event was not delivered). The router's own loop needs no second read
        to find the outbox empty: an event committed after this read wakes it (`nudge`, after
        the commit), and so do those its handlers write."""
        pending = self._store.pending_events(self._batch)
        if not pending:
            return False
        return self._deliver_batch(pending) < len(pending) or len(pending) == self._batch

    def _wait(self) -> bool:
        """Wait until a pass is wanted (at once, once due, or every 0.5 s all the same: events
        another process wrote); False: only woken to wait for a nearer time."""
        with self._lock:
            wait = 0.5 if self._due is None else self._due - time.monotonic()
            now = self._now
        if not now and wait > 0:
            self._wake.wait(timeout=wait)
        self._wake.clear()
        with self._lock:
            if not self._now and self._due is not None and time.monotonic() < self._due:
                return False
            self._now, self._due = False, None  # before the read: what it misses wakes again
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._wait() or self._stop.is_set():
                continue
            try:
                if self._pass():
                    self._signal(soon=False)
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


def _runs(pipeline: Pipeline, pending: list[StoredEvent]) -> list[list[StoredEvent]]:
    """Split events into runs: consecutive batchable events of one type, or single events."""
    runs: list[list[StoredEvent]] = []
    for stored in pending:
        kind = stored.event.type
        if runs and pipeline.batchable(kind) and runs[-1][-1].event.type == kind:
            runs[-1].append(stored)
        else:
            runs.append([stored])
    return runs


def router_after_reply(app: WSGIApplication, router: Router) -> WSGIApplication:
    """`app` with the router's wakes of each request held until its reply is written (the
    server calls the body's `close` then): on the embedded default a pilot's report commits
    job.ended events, and the router woken at that commit would compete with the reply that
    carries the pilot's next job (`Router.hold`). A long-poll lets go as its wait starts."""

    def wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        router.hold()
        try:
            body = app(environ, start_response)
        except BaseException:
            router.let_go()
            raise
        return ClosingIterator(body, router.let_go)

    return wsgi


def tick_event(now: float) -> Event:
    return ev.tick(f"{now:.3f}")
