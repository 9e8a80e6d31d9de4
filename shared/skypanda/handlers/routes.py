"""Which handlers receive which events: the one routing table both backends follow.

On Google Cloud each row is a Cloud Function subscribed to the event's topic (or, for
job.ended, triggered by the job document's change); locally the router reads this table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from skypanda.domain.events import EventType
from skypanda.handlers import release, scale, split, sweep, workflow
from skypanda.handlers.services import Services

Handler = Callable[[Services, Any], object]

ROUTES: dict[EventType, tuple[Handler, ...]] = {
    EventType.TASK_REGISTERED: (split.handle,),
    EventType.WORKFLOW_REGISTERED: (workflow.handle_registered,),
    EventType.JOBS_ACTIVATED: (scale.handle,),
    EventType.JOB_ENDED: (release.handle,),
    EventType.TICK: (scale.handle, sweep.handle),
}

BatchHandler = Callable[[Services, Sequence[Any]], object]

# Handlers that can take a run of events of one type at once (same effect as one by one, fewer
# transactions). Only the local router batches; a Cloud Function gets one event per call.
BATCH_ROUTES: dict[EventType, BatchHandler] = {
    EventType.JOB_ENDED: release.handle_batch,
}
