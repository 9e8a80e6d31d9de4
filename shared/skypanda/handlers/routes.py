"""Which handlers receive which events: `domain.events.SUBSCRIBERS` (the table, by name) made
into functions. Both backends follow it: locally the router, on Google Cloud the topology (one
subscription per name) and the Cloud Functions (`runtime.entrypoints`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from skypanda.domain.events import SUBSCRIBERS, EventType
from skypanda.handlers import bulk, release, scale, split, sweep, workflow
from skypanda.handlers.services import Services

Handler = Callable[[Services, Any], object]
"""A handler takes the services and its event type's payload (`domain.events.PAYLOADS`)."""

HANDLERS: dict[str, Handler] = {  # every name in SUBSCRIBERS (checked by a test)
    "split": split.handle,
    "workflow": workflow.handle_registered,
    "scale": scale.handle,
    "release": release.handle,
    "sweep": sweep.handle,
    "bulk": bulk.handle,
}

ROUTES: dict[EventType, tuple[Handler, ...]] = {
    kind: tuple(HANDLERS[name] for name in names) for kind, names in SUBSCRIBERS.items()
}

BatchHandler = Callable[[Services, Sequence[Any]], object]

# Handlers that can take a run of events of one type at once (same effect as one by one, fewer
# transactions). Only the local router batches; a Cloud Function gets one event per call.
BATCH_ROUTES: dict[EventType, BatchHandler] = {
    EventType.JOB_ENDED: release.handle_batch,
}
