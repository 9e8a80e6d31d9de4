"""scale (on tick and on jobs.activated): launch the pilots each queue needs (Harvester).

Also reconciles pilot records with the launcher's view: a pilot whose process is gone while
its record is live is ended, and its jobs are requeued without waiting for the heartbeat timeout.
"""

from __future__ import annotations

import logging
from typing import Any

from skypanda.domain.models import Pilot, Queue
from skypanda.domain.policy import pilots_wanted
from skypanda.domain.states import PILOT_LIVE, PilotStatus
from skypanda.handlers.dispatch import retire
from skypanda.handlers.envelope import QueueNudge, decode
from skypanda.handlers.services import Services, new_id

log = logging.getLogger(__name__)


def handle(svc: Services, cloud_event: Any = None) -> int:
    """Returns how many pilots were launched."""
    if svc.launcher is None:
        return 0
    only = decode(cloud_event, QueueNudge).queue if cloud_event is not None else None
    reconcile(svc)
    launched = 0
    for queue in svc.store.list_queues():
        if queue.online and (only is None or queue.name == only):
            launched += scale_queue(svc, queue)
    return launched


def reconcile(svc: Services) -> None:
    assert svc.launcher is not None
    for seen in svc.launcher.list():
        if seen.alive:
            continue
        pilot = svc.store.get_pilot(seen.pilot_id)
        if pilot.status in PILOT_LIVE:
            status = PilotStatus.FINISHED if seen.exit_code == 0 else PilotStatus.FAILED
            retire(svc, pilot, status, f"process exited with code {seen.exit_code}")
        forget = getattr(svc.launcher, "forget", None)
        if forget is not None:
            forget(seen.pilot_id)


def scale_queue(svc: Services, queue: Queue) -> int:
    assert svc.launcher is not None
    live = len(svc.store.list_pilots(queue=queue.name, live=True))
    activated = svc.store.count_activated(queue.name)
    n = pilots_wanted(
        min_pilots=queue.min_pilots, max_pilots=queue.max_pilots, live=live, activated=activated
    )
    for _ in range(n):
        now = svc.clock.now()
        pilot = Pilot(
            id=new_id("p"), queue=queue.name, resources=queue.pilot_resources, created_at=now
        )
        svc.store.add_pilot(pilot)
        ref = svc.launcher.launch(queue, pilot.id)
        svc.store.update_pilot(
            pilot.model_copy(update={"launcher_ref": ref}), [PilotStatus.SUBMITTED]
        )
    if n:
        log.info(
            "queue %s: %d activated jobs, %d live pilots: launched %d",
            queue.name,
            activated,
            live,
            n,
        )
    return n
