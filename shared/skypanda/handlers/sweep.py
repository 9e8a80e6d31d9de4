"""sweep (on tick): pilots silent past their queue's heartbeat timeout are declared missed and
their jobs requeued as new attempts. Idempotent: the pilot's move to missed is compare-and-set.
It also prunes audit entries past their retention (a bounded batch per tick), and, where a
transport may lose an event (Eventarc and Pub/Sub on Google Cloud: `resend_lost_after_s` in the
services' settings), sends again the outbox events not handled that long after they were sent:
handlers are idempotent, so an event that was only slow is handled twice to no effect. After
MAX_RESENDS sends an event is parked dead (`skypanda doctor` lists it). The embedded router
reads the outbox itself and loses nothing in transit: no setting, no re-send.

A server outage is nobody's silence. The sweep is the server's own pulse: it leaves a mark at
every tick (ports.SweepMark), and a gap between two ticks much longer than their usual cadence
means the server was down (stopped, restarting, its functions unreachable). Pilots cannot
heartbeat to a server that is down, so after an outage each queue's heartbeat timeout runs
again from the server's return (grace): pilots that rode the outage out check in and lose
nothing. A pilot still silent after that was last heard around the outage: it left because
the server was unreachable (it ends `disconnected`, its jobs are requeued without counting an
attempt, and the scaler's back-off does not count it). Silence that began while the server
was up is what it always was: missed, a counted attempt.
"""

from __future__ import annotations

import logging

from skypanda.domain.audit import RETENTION_S
from skypanda.domain.events import Tick
from skypanda.domain.models import Pilot, Queue
from skypanda.domain.states import PilotStatus
from skypanda.domain.watch import RECORDS_KEPT_S
from skypanda.handlers import notify, watch
from skypanda.handlers.dispatch import retire
from skypanda.handlers.services import Services
from skypanda.ports.fleet import SweepMark
from skypanda.wire.logs import LogEvent, event

log = logging.getLogger(__name__)

OUTAGE_MIN_GAP_S = 5.0
"""A gap between two sweeps shorter than this is never taken for an outage."""
OUTAGE_CADENCE_FACTOR = 3.0
"""A gap this many times the sweeps' usual cadence (or more) is an outage of the server. The
cadence is learnt: about a second for the embedded server, a minute for Cloud Scheduler."""
CADENCE_WEIGHT = 0.2
"""How much one gap moves the learnt cadence (an exponential moving average)."""


MAX_RESENDS = 5
"""Sends of a lost event (its first included) before it is parked dead."""
RESEND_BATCH = 500
"""Lost events re-sent per sweep at most (bounded work per tick)."""


def handle(svc: Services, tick: Tick | None = None) -> int:
    """Returns how many pilots were declared missed (or disconnected)."""
    now = svc.clock.now()
    mark = next_mark(svc.fleet.last_sweep(), now)
    svc.fleet.mark_sweep(mark)
    if mark.resumed_at == now and mark.down_since is not None:
        log.warning(
            "the sweep did not run for %.0f s (the server was down): every pilot gets its "
            "heartbeat timeout again from now",
            now - mark.down_since,
        )
    ended = 0
    for queue in svc.fleet.list_queues():
        ended += _sweep_queue(svc, queue, mark, now)
    resend_lost(svc, now)
    watch.flush(svc)  # batches past their T seconds (bounded per tick)
    notify.send_due(svc, now)  # webhook deliveries due (bounded per tick)
    pruned = svc.audit.prune_audit(now - RETENTION_S)
    if pruned:
        log.info("pruned %d audit entries older than %d days", pruned, RETENTION_S // 86400)
    pruned = svc.store.prune_watch_records(now - RECORDS_KEPT_S)
    if pruned:
        log.info("pruned %d records of watch batches ended over %d days ago", pruned,
                 RECORDS_KEPT_S // 86400)  # fmt: skip
    return ended


def resend_lost(svc: Services, now: float) -> int:
    """Send again the events not handled `resend_lost_after_s` after they were sent; returns
    how many were sent."""
    after = svc.settings.get("resend_lost_after_s")
    if not isinstance(after, int | float) or after <= 0:
        return 0
    lost = svc.outbox.lost_events(now - after, RESEND_BATCH)
    given_up = [s for s in lost if s.tries + 1 >= MAX_RESENDS]
    for stored in given_up:
        why = f"not handled after {MAX_RESENDS} sends, {after:g} s apart"
        log.error("event %s (%s): %s; parked", stored.event.id, stored.event.type, why,
                  extra=event(LogEvent.EVENT_DEAD, kind=str(stored.event.type)))  # fmt: skip
        svc.outbox.mark_failed(stored.seq, why, dead=True)
    again = [s.event for s in lost if s.tries + 1 < MAX_RESENDS]
    if again:
        svc.bus.publish(again)
        svc.outbox.mark_resent([e.id for e in again], now)
        log.warning(
            "sent %d events again, not handled %g s after they were sent: %s",
            len(again), after, ", ".join(f"{e.type} {e.id}" for e in again[:5]),
        )  # fmt: skip
    return len(again)


def _sweep_queue(svc: Services, queue: Queue, mark: SweepMark, now: float) -> int:
    timeout = queue.heartbeat_timeout_s
    if in_grace(mark, now, timeout):
        return 0  # the server came back less than a timeout ago: silence counts from then
    silent = svc.fleet.silent_pilots(queue.name, now - timeout)
    for pilot in silent:
        if left_in_outage(heard_at(pilot), mark, timeout):
            why = "silent since the server's outage (the server was unreachable)"
            retire(svc, pilot, PilotStatus.DISCONNECTED, why)
        else:
            retire(svc, pilot, PilotStatus.MISSED, f"no heartbeat for {timeout:g} s")
    return len(silent)


# -- pure decisions ---------------------------------------------------------------------------


def next_mark(last: SweepMark | None, now: float) -> SweepMark:
    """This sweep's mark, from the last one: an outage when the gap since the last sweep is
    much longer than the usual cadence (then the outage is recorded and the cadence kept),
    else the cadence learns the gap. The first sweep ever sees no outage; the second, with no
    cadence to compare, takes any gap over OUTAGE_MIN_GAP_S for one and learns its cadence
    from it (at worst, one needless grace on a server's first start)."""
    if last is None:
        return SweepMark(swept_at=now)
    gap = now - last.swept_at
    if gap > outage_gap_s(last.cadence_s):
        cadence = gap if last.cadence_s is None else last.cadence_s
        return SweepMark(now, cadence, down_since=last.swept_at, resumed_at=now)
    gap = max(gap, 0.0)  # a clock that stepped back, or a tick delivered twice
    cadence = (
        gap if last.cadence_s is None else last.cadence_s + CADENCE_WEIGHT * (gap - last.cadence_s)
    )
    return SweepMark(now, cadence, last.down_since, last.resumed_at)


def outage_gap_s(cadence_s: float | None) -> float:
    """The shortest gap between two sweeps that is an outage, for a usual cadence."""
    return max(OUTAGE_MIN_GAP_S, OUTAGE_CADENCE_FACTOR * (cadence_s or 0.0))


def in_grace(mark: SweepMark, now: float, timeout_s: float) -> bool:
    """Whether the server came back from an outage less than `timeout_s` ago."""
    return mark.resumed_at is not None and now - mark.resumed_at < timeout_s


def left_in_outage(heard: float, mark: SweepMark | None, timeout_s: float) -> bool:
    """Whether a pilot last heard at `heard` went silent because of the server's last outage:
    heard before the server came back, and not already silent for a timeout when it went
    down."""
    if mark is None or mark.resumed_at is None:
        return False
    down = mark.down_since if mark.down_since is not None else mark.resumed_at
    return down - timeout_s <= heard <= mark.resumed_at


def heard_at(pilot: Pilot) -> float:
    """When the pilot was last heard from: its last heartbeat, else its creation."""
    return pilot.heartbeat_at if pilot.heartbeat_at is not None else pilot.created_at
