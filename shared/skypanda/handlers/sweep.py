"""sweep (on tick): pilots silent past their queue's heartbeat timeout are declared missed and
their jobs requeued as new attempts. Idempotent: the pilot's move to missed is compare-and-set.
It also prunes audit entries past their retention (a bounded batch per tick)."""

from __future__ import annotations

import logging

from skypanda.domain.audit import RETENTION_S
from skypanda.domain.events import Tick
from skypanda.domain.states import PilotStatus
from skypanda.handlers.dispatch import retire
from skypanda.handlers.services import Services

log = logging.getLogger(__name__)


def handle(svc: Services, tick: Tick | None = None) -> int:
    """Returns how many pilots were declared missed."""
    now = svc.clock.now()
    missed = 0
    for queue in svc.fleet.list_queues():
        for pilot in svc.fleet.silent_pilots(queue.name, now - queue.heartbeat_timeout_s):
            retire(
                svc, pilot, PilotStatus.MISSED, f"no heartbeat for {queue.heartbeat_timeout_s:g} s"
            )
            missed += 1
    pruned = svc.audit.prune_audit(now - RETENTION_S)
    if pruned:
        log.info("pruned %d audit entries older than %d days", pruned, RETENTION_S // 86400)
    return missed
