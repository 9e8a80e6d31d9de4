"""scale (on tick and on jobs.activated): launch the pilots each queue needs (Harvester).

Also reconciles pilot records with the launcher's view: a pilot whose process is gone while
its record is live is ended, and its jobs are requeued without waiting for the heartbeat timeout.
"""

from __future__ import annotations

import logging

from skypanda.domain import scaling
from skypanda.domain.errors import SkypandaError
from skypanda.domain.events import QueueNudge, Tick
from skypanda.domain.models import Job, Pilot, Queue
from skypanda.domain.states import PILOT_LIVE, PilotStatus
from skypanda.handlers.dispatch import retire
from skypanda.handlers.services import Services, new_id

log = logging.getLogger(__name__)


def handle(svc: Services, nudge: QueueNudge | Tick | None = None) -> int:
    """Scale the nudged queue (a tick or None: every queue). Returns how many pilots were
    launched."""
    if svc.launcher is None:
        return 0
    only = nudge.queue if isinstance(nudge, QueueNudge) else None
    reconcile(svc)
    launched = 0
    for queue in svc.fleet.list_queues():
        if queue.online and (only is None or queue.name == only):
            try:
                launched += scale_queue(svc, queue)
            except SkypandaError as e:  # this queue's launcher failed; the others go on
                log.warning("queue %s: cannot launch pilots: %s", queue.name, e.message)
                _note(svc, queue.name, f"cannot launch pilots: {e.message}", svc.clock.now())
    return launched


def reconcile(svc: Services) -> None:
    assert svc.launcher is not None
    for seen in svc.launcher.list():
        if seen.alive:
            continue
        pilot = svc.fleet.get_pilot(seen.pilot_id)
        if pilot.status in PILOT_LIVE:
            if seen.exit_code is None:  # its pod, task or process is gone without a trace
                status, why = PilotStatus.MISSED, f"vanished from the launcher ({seen.ref})"
            elif seen.exit_code == 0:
                status, why = PilotStatus.FINISHED, "exited with code 0"
            else:
                status, why = PilotStatus.FAILED, f"exited with code {seen.exit_code}"
            retire(svc, pilot, status, why)
        forget = getattr(svc.launcher, "forget", None)
        if forget is not None:
            forget(seen.pilot_id)


PUSH_LOOKAHEAD = 1000
"""Push mode: how many activated jobs (in dispatch order) one decision looks at."""


def scale_queue(svc: Services, queue: Queue) -> int:
    """Decide (domain.scaling) and launch; record the decision and why. Returns launches."""
    assert svc.launcher is not None
    now = svc.clock.now()
    live = svc.fleet.list_pilots(queue=queue.name, live=True)
    failures = svc.fleet.count_failed_pilots(queue.name, now - scaling.BACKOFF_WINDOW_S)
    limits = scaling.Limits(
        queue.min_pilots, queue.max_pilots, queue.max_new_per_cycle, queue.max_queued
    )
    submitted = sum(p.status is PilotStatus.SUBMITTED for p in live)
    if queue.mode == "push":
        served = {p.push_job for p in live if p.push_job}
        waiting = svc.jobs.list_activated(queue.name, PUSH_LOOKAHEAD)
        jobs = {j.id: j for j in waiting if j.id not in served}
        state = scaling.QueueState(
            activated=len(waiting), submitted=submitted, running=len(live) - submitted,
            recent_failures=failures, unserved=tuple(jobs),
        )  # fmt: skip
        decision = scaling.decide_push(limits, state)
        for job_id in decision.push:
            _launch(svc, queue, jobs[job_id])
    else:
        state = scaling.QueueState(
            activated=svc.jobs.count_activated(queue.name), submitted=submitted,
            running=len(live) - submitted, recent_failures=failures,
        )  # fmt: skip
        decision = scaling.decide_pull(limits, state)
        for _ in range(decision.launch):
            _launch(svc, queue, None)
    _note(svc, queue.name, decision.reason, now)
    if decision.total:
        log.info("queue %s: %s", queue.name, decision.reason)
    return decision.total


def _note(svc: Services, queue: str, reason: str, now: float) -> None:
    """Record the decision when it changed (a tick that changes nothing writes nothing)."""
    if svc.memory.noted.get(queue) != reason:
        svc.fleet.note_scaling(queue, reason, now)
        svc.memory.noted[queue] = reason


def _launch(svc: Services, queue: Queue, job: Job | None) -> None:
    assert svc.launcher is not None
    now = svc.clock.now()
    size = job.resources if job is not None else queue.pilot_resources
    pilot = Pilot(
        id=new_id("p"), queue=queue.name, resources=size, created_at=now,
        push_job=job.id if job is not None else None,
    )  # fmt: skip
    svc.fleet.add_pilot(pilot)
    ref = svc.launcher.launch(queue, pilot.id, job)
    svc.fleet.update_pilot(pilot.model_copy(update={"launcher_ref": ref}), [PilotStatus.SUBMITTED])
