"""Which handlers receive which events: `domain.events.SUBSCRIBERS` (the table, by name) made
into functions. Both backends follow it: locally the router, on Google Cloud the topology (one
subscription per name) and the Cloud Functions (`runtime.entrypoints`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from skypanda.domain.events import EventType
from skypanda.handlers import (
    bulk,
    chain,
    intake,
    notify,
    release,
    scale,
    split,
    sweep,
    watch,
    workflow,
)
from skypanda.handlers.services import Services

Handler = Callable[[Services, Any], object]
"""A handler takes the services and its event type's payload (`domain.events.PAYLOADS`)."""

HANDLERS: Mapping[str, Handler] = MappingProxyType(
    {  # every name in SUBSCRIBERS (a test checks)
        "split": split.handle,
        "workflow": workflow.handle_registered,
        "scale": scale.handle,
        "release": release.handle,
        "sweep": sweep.handle,
        "bulk": bulk.handle,
        "notify": notify.handle,
        "chain": chain.handle,
        "intake": intake.handle,
        "watch": watch.handle,
    }
)

BatchHandler = Callable[[Services, Sequence[Any]], object]

# Handlers that can take a run of events of one type at once (same effect as one by one, fewer
# transactions). Only the local router batches; a Cloud Function gets one event per call.
BATCH_ROUTES: Mapping[EventType, BatchHandler] = MappingProxyType(
    {
        EventType.JOB_ENDED: release.handle_batch,
    }
)
