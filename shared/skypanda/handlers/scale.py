"""scale (on tick and on jobs.activated): launch the pilots each queue needs (Harvester).

Also reconciles pilot records with the launcher's view: a pilot whose process is gone while
its record is live is ended, and its jobs are requeued without waiting for the heartbeat timeout.
A pilot that gave up on an unreachable server ends `disconnected`, which the back-off does not
count; an admin clears a queue's back-off with `reset_backoff`.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

from skypanda.domain import events as ev
from skypanda.domain import scaling
from skypanda.domain.errors import SkypandaError
from skypanda.domain.events import QueueNudge, Tick
from skypanda.domain.models import Job, Pilot, Queue
from skypanda.domain.states import PILOT_LIVE, PilotStatus
from skypanda.handlers import observe
from skypanda.handlers.dispatch import retire
from skypanda.handlers.services import Services, new_id
from skypanda.ports import LaunchedPilot

log = logging.getLogger(__name__)


_ONE_DECISION = threading.Lock()
"""Scaling decisions are made one at a time: two at once would each count the pilots before
the other's launches and together pass max_pilots. On Google Cloud the scale function runs
one request at a time on one instance (runtime.deployment); in one process (the embedded
system: a tick on its thread, a `jobs.activated` on the router's) this lock does it."""


def handle(svc: Services, nudge: QueueNudge | Tick | None = None) -> int:
    """Scale the nudged queue (a tick or None: every queue). Returns how many pilots were
    launched."""
    if svc.launcher is None:
        return 0
    with _ONE_DECISION:
        return _decide(svc, nudge)


def _decide(svc: Services, nudge: QueueNudge | Tick | None) -> int:
    only = nudge.queue if isinstance(nudge, QueueNudge) else None
    # Work announced on one queue and taken already (a child claimed in the very commit that
    # released it: dispatch.update) needs no pilot: one count instead of a pass. Whatever else
    # the queue needs (its minimum, dead pilots) the tick sees to.
    if (
        isinstance(nudge, QueueNudge)
        and nudge.queue is not None
        and nudge.count > 0
        and not svc.jobs.count_activated(nudge.queue)
    ):
        return 0
    queues = svc.fleet.list_queues()
    prepare = getattr(svc.launcher, "prepare", None)  # see the pilots of an earlier instance
    if prepare is not None:
        prepare([q for q in queues if q.online])
    reconcile(svc)
    launched = 0
    for queue in queues:
        if queue.online and (only is None or queue.name == only):
            try:
                launched += scale_queue(svc, queue)
            except SkypandaError as e:  # this queue's launcher failed; the others go on
                log.warning("queue %s: cannot launch pilots: %s", queue.name, e.message)
                _note(svc, queue.name, f"cannot launch pilots: {e.message}", svc.clock.now())
    return launched


PILOT_EXIT_UNREACHABLE = 3
"""A pilot's exit code when it could not reach the server (skypanda.pilot.agent's
EXIT_UNREACHABLE: the server imports nothing of the pilot; a test checks they agree)."""


def reconcile(svc: Services) -> None:
    assert svc.launcher is not None
    for seen in svc.launcher.list():
        if seen.alive:
            continue
        pilot = svc.fleet.get_pilot(seen.pilot_id)
        if pilot.status in PILOT_LIVE:
            retire(svc, pilot, *_exit_status(svc, pilot, seen))
        forget = getattr(svc.launcher, "forget", None)
        if forget is not None:
            forget(seen.pilot_id)


def _exit_status(svc: Services, pilot: Pilot, seen: LaunchedPilot) -> tuple[PilotStatus, str]:
    """How a live pilot whose process is gone ended, and why.

    Exit code 3 is a pilot that could not reach the server: once registered, it left because
    the server was down for its whole outage budget (disconnected: not its failure). Before
    registering it may as well have been given a wrong address, so it counts as failed unless
    the server knows it was down meanwhile."""
    code = seen.exit_code
    if code is None:  # its pod, task or process is gone without a trace
        return PilotStatus.MISSED, f"vanished from the launcher ({seen.ref})"
    if code == 0:
        return PilotStatus.FINISHED, "exited with code 0"
    if code == PILOT_EXIT_UNREACHABLE and (
        pilot.status is PilotStatus.RUNNING or _outage_since(svc, pilot.created_at)
    ):
        return PilotStatus.DISCONNECTED, f"exited with code {code}: the server was unreachable"
    return PilotStatus.FAILED, f"exited with code {code}"


def _outage_since(svc: Services, t: float) -> bool:
    """Whether the server was down at some time after `t` (the sweep's mark says)."""
    mark = svc.fleet.last_sweep()
    return mark is not None and mark.resumed_at is not None and mark.resumed_at >= t


def reset_backoff(svc: Services, queue: str) -> dict[str, Any]:
    """An admin clears a queue's back-off: pilots that failed before now no longer count, and
    the scaler looks at the queue at once. Repeating it is harmless.

    Raises:
        NotFound: no such queue.
    """
    svc.fleet.get_queue(queue)
    now = svc.clock.now()
    svc.fleet.reset_backoff(queue, now)
    svc.memory.noted.pop(queue, None)
    svc.outbox.add_events([ev.jobs_activated(queue, 0, key=f"reset-backoff:{now}")])
    log.info("queue %s: back-off reset", queue)
    return {"queue": queue, "reset_at": now}


PUSH_LOOKAHEAD = 1000
"""Push mode: how many activated jobs (in dispatch order) one decision looks at."""


def scale_queue(svc: Services, queue: Queue) -> int:
    """Decide (domain.scaling) and launch; record the decision and why. Returns launches."""
    assert svc.launcher is not None
    now = svc.clock.now()
    live = svc.fleet.list_pilots(queue=queue.name, live=True)
    failures, paused = _failures(svc, queue.name, now)
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
            recent_failures=failures, paused_failures=paused, unserved=tuple(jobs),
        )  # fmt: skip
        decision = scaling.decide_push(limits, state)
        for job_id in decision.push:
            _launch(svc, queue, jobs[job_id])
    else:
        # Only the jobs a pilot launched here could take: one too big for it (the queue made
        # smaller since) must not have pilots launched for it, again and again.
        # No more than all its pilots could run at once (each job takes one core at least):
        # beyond that, the decision is the same (launch up to max_pilots).
        most = max(1, queue.max_pilots) * max(1, queue.pilot_resources.cores)
        demand = svc.jobs.waiting_cores(queue.name, queue.pilot_resources, most)
        free = _free(svc, queue.name, live) if demand.jobs else scaling.Work(0, 0)
        state = scaling.QueueState(
            activated=demand.jobs, submitted=submitted, running=len(live) - submitted,
            recent_failures=failures, paused_failures=paused, free_slots=free.jobs,
            slots_per_pilot=queue.pilot_resources.cores, waiting_cores=demand.cores,
            free_cores=free.cores,
        )  # fmt: skip
        decision = scaling.decide_pull(limits, state)
        for _ in range(decision.launch):
            _launch(svc, queue, None)
    if _note(svc, queue.name, decision.reason, now) or decision.total:
        observe.scaled(queue.name, decision.total, state.activated, decision.reason)
    return decision.total


def _free(svc: Services, queue: str, live: list[Pilot]) -> scaling.Work:
    """Payload slots (`jobs`) and cores free on the queue's running pilots: their slots and
    cores (as each said at registration) less the jobs they hold and the cores those ask for.

    A job takes a slot and its cores, as in the pilot: a worker thread per slot, and a job
    starts once its cores are free, among max(cores, slots) (more slots than cores: 1-core
    jobs share them). A draining pilot takes no job: its slots and cores do not count, its
    jobs do. One aggregation whatever the number of pilots; a pilot holding more than its
    slots (jobs prefetched while they were short) hides that many free slots of others, so
    the count errs towards launching a pilot, never towards a job waiting."""
    running = [p for p in live if p.status is PilotStatus.RUNNING and not p.drain]
    slots = sum(p.payload_slots for p in running)
    if not slots:
        return scaling.Work(0, 0)
    cores = sum(max(p.resources.cores, p.payload_slots) for p in running)
    held = svc.fleet.held_cores(queue)
    return scaling.Work(jobs=max(0, slots - held.jobs), cores=max(0, cores - held.cores))


def _failures(svc: Services, queue: str, now: float) -> tuple[int, int]:
    """The queue's pilots that failed in the back-off window (since its last reset), and how
    many of them within the pause that many failures call for (scaling.backoff_pause_s)."""
    since = now - scaling.BACKOFF_WINDOW_S
    reset = svc.fleet.backoff_reset_at(queue)
    if reset is not None:  # forget failures up to the reset, at its very time too
        since = max(since, math.nextafter(reset, math.inf))
    failures = svc.fleet.count_failed_pilots(queue, since)
    pause = scaling.backoff_pause_s(failures)
    if not pause:
        return failures, 0
    return failures, svc.fleet.count_failed_pilots(queue, max(since, now - pause))


def _note(svc: Services, queue: str, reason: str, now: float) -> bool:
    """Record the decision when it changed (a tick that changes nothing writes nothing);
    whether it did."""
    if svc.memory.noted.get(queue) != reason:
        svc.fleet.note_scaling(queue, reason, now)
        svc.memory.noted[queue] = reason
        return True
    return False


def _launch(svc: Services, queue: Queue, job: Job | None) -> None:
    assert svc.launcher is not None
    now = svc.clock.now()
    size = job.resources if job is not None else queue.pilot_resources
    pilot = Pilot(
        id=new_id("p"), queue=queue.name, resources=size, created_at=now,
        push_job=job.id if job is not None else None,
    )  # fmt: skip
    svc.fleet.add_pilot(pilot)
    try:
        ref = svc.launcher.launch(queue, pilot.id, job)
    except SkypandaError as e:  # a failed pilot at once: the queue's back-off counts it
        retire(svc, pilot, PilotStatus.FAILED, f"launch failed: {e.message}")
        raise
    svc.fleet.update_pilot(pilot.model_copy(update={"launcher_ref": ref}), [PilotStatus.SUBMITTED])
    observe.pilot_launched(pilot, ref)
