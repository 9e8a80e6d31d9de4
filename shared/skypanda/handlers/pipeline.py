"""The one event pipeline: every transport hands its events here.

The outbox router (embedded), a Pub/Sub push (a Cloud Function per event type) and a
Firestore `document.written` on the outbox (the `release` function) each turn what they
received into an `Event` and call `Pipeline.deliver`. The pipeline decodes the payload once
into its type's model, runs the event type's handlers, and decides the outcome with one policy:

    DELIVERED  the handlers returned: acknowledge.
    RETRY      a transient failure (a retryable SkypandaError, or an unexpected exception,
               which may be a flaky backend): deliver it again later, with backoff, up to
               `max_tries` deliveries in all.
    DEAD       poison (the payload is not of its type's shape, the transport's message is
               not a skypanda event, or a non-retryable error such as an unknown id), or the
               tries are used up: park it on the transport's dead letter with the reason, and
               acknowledge it, so it stops costing deliveries.

The transport only maps the outcome onto its own mechanism (router: outbox row marked
delivered, failed or dead; Pub/Sub and Eventarc: return, raise for a redelivery, or publish to
the dead-letter topic and return). Logs and counters are the same on every path.

Handlers are idempotent (compare-and-set writes), so a redelivery after a partial failure
changes nothing that already happened.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from skypanda.domain.errors import SkypandaError
from skypanda.domain.events import SUBSCRIBERS, Event, EventType, Payload, payload_of
from skypanda.handlers.routes import BATCH_ROUTES, HANDLERS, BatchHandler, Handler
from skypanda.handlers.services import Services
from skypanda.wire import logs
from skypanda.wire.logs import LogEvent

__all__ = ["MAX_TRIES", "Outcome", "Pipeline", "Result"]

log = logging.getLogger(__name__)

MAX_TRIES = 5
"""Deliveries of one event before it is dead (Pub/Sub's smallest max_delivery_attempts)."""


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    reason: str = ""


DELIVERED = Result(Outcome.DELIVERED)


class Pipeline:
    """Decode, route, run, and decide what becomes of an event.

    Args:
        svc: the services the handlers are given.
        routes: event type -> the names of its handlers (default: `domain.events.SUBSCRIBERS`).
        handlers: name -> handler (default: `handlers.routes.HANDLERS`).
        batch_routes: event types whose handler takes a run of events at once.
        max_tries: deliveries before a failing event is dead.

    Attributes:
        counts: outcomes by `"<event type>:<outcome>"` (for tests, benchmarks and metrics).
    """

    def __init__(
        self,
        svc: Services,
        *,
        routes: Mapping[EventType, tuple[str, ...]] = SUBSCRIBERS,
        handlers: Mapping[str, Handler] = HANDLERS,
        batch_routes: Mapping[EventType, BatchHandler] = BATCH_ROUTES,
        max_tries: int = MAX_TRIES,
    ) -> None:
        self.svc = svc
        self._routes = routes
        self._handlers = handlers
        self._batch_routes = batch_routes
        self.max_tries = max_tries
        self.counts: Counter[str] = Counter()

    def deliver(
        self, event: Event, *, tries: int = 0, transport: str = "", only: str | None = None
    ) -> Result:
        """Deliver one event to its handlers (`only`: just that one, as a Cloud Function
        subscribed for one handler does). `tries`: how many deliveries failed before.

        Never raises: every failure becomes a RETRY or DEAD result (logged here). Every line
        logged meanwhile carries the labels the event's data names (task, job, queue...)."""
        with logs.labels(**logs.labels_of(event.data)):
            return self._deliver(event, tries, transport, only)

    def _deliver(self, event: Event, tries: int, transport: str, only: str | None) -> Result:
        names = self._routes.get(event.type, ())
        if only is not None:
            if only not in names:
                reason = f"{event.type} is not for {only} (it goes to {', '.join(names)})"
                return self.poison(event.id, reason, transport, kind=event.type)
            names = (only,)
        try:
            payload = payload_of(event)
        except SkypandaError as e:
            return self.poison(event.id, e.message, transport, kind=event.type)
        try:
            for name in names:
                self._handlers[name](self.svc, payload)
        except SkypandaError as e:
            result = self._failed(event, e.message, e.retryable, tries, transport)
        except Exception as e:  # a bug or a backend's own error: maybe transient, so retried
            log.exception("event %s: handler crashed", event.id)
            result = self._failed(event, f"{type(e).__name__}: {e}", True, tries, transport)
        else:
            result = DELIVERED
        return self._done(event.type, result)

    def batchable(self, event_type: EventType) -> bool:
        return event_type in self._batch_routes

    def deliver_batch(self, events: Sequence[Event]) -> bool:
        """Deliver a run of events of one batchable type in one call. False: nothing is known
        about which event failed, so the caller delivers them one by one (`deliver`)."""
        kind = events[0].type
        try:
            payloads: list[Payload] = [payload_of(e) for e in events]
            self._batch_routes[kind](self.svc, payloads)
        except Exception as e:
            log.info("batch of %d %s events failed (%s); one by one", len(events), kind, e)
            return False
        self.counts[f"{kind}:{Outcome.DELIVERED}"] += len(events)
        return True

    def poison(
        self, event_id: str, reason: str, transport: str = "", kind: str = "unknown"
    ) -> Result:
        """Dead at once: the payload is not of its type's shape, or (called by a transport)
        what it received is not a skypanda event at all (`kind` unknown). Logged and counted
        like every outcome."""
        log.error("%sevent %s is poison: %s", _via(transport), event_id, reason,
                  extra=logs.event(LogEvent.EVENT_DEAD, kind=str(kind)))  # fmt: skip
        return self._done(kind, Result(Outcome.DEAD, reason))

    def _failed(
        self, event: Event, reason: str, retryable: bool, tries: int, transport: str
    ) -> Result:
        if retryable and tries + 1 < self.max_tries:
            log.warning(
                "%sevent %s failed (try %d): %s", _via(transport), event.id, tries + 1, reason
            )
            return Result(Outcome.RETRY, reason)
        log.error("%sevent %s is dead: %s", _via(transport), event.id, reason,
                  extra=logs.event(LogEvent.EVENT_DEAD, kind=str(event.type)))  # fmt: skip
        return Result(Outcome.DEAD, reason)

    def _done(self, kind: EventType | str, result: Result) -> Result:
        self.counts[f"{kind}:{result.outcome}"] += 1
        return result


def _via(transport: str) -> str:
    return f"{transport}: " if transport else ""
