"""dispatch: the pilot's side of the protocol (register, acquire, update, heartbeat, log, end).

Pilots call these through the HTTP API. Only the heartbeat call writes the pilot record (once
per heartbeat interval: no hot document), and it never writes a job, so job-change triggers
fire on real state changes only. Replies carry commands: jobs to kill
(their task was killed, or the job is no longer this pilot's live attempt) and `drain`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from skypanda.domain.bulk import Action
from skypanda.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, SkypandaError
from skypanda.domain.events import EventType, JobEnded
from skypanda.domain.fairshare import OwnerLoad, allocate
from skypanda.domain.jobflow import (
    JobChange,
    RetryContext,
    apply_report,
    claim,
    log_key,
    replayed_end,
    requeue_lost,
)
from skypanda.domain.models import Job, JobReport, Pilot, Queue, Resources
from skypanda.domain.retry import Limits, raise_for_task
from skypanda.domain.states import (
    JOB_LIVE,
    PILOT_LIVE,
    JobStatus,
    PilotStatus,
    TaskStatus,
    advance,
)
from skypanda.handlers import bulk, known, observe, release
from skypanda.handlers.ends import task_moved
from skypanda.handlers.services import Services, new_id
from skypanda.wire.codes import ErrorCode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    """What the server tells a pilot after any call; after an update that asked for work, the
    jobs it now holds too."""

    commands: list[dict[str, str]] = field(default_factory=list)
    drain: bool = False
    jobs: list[Job] = field(default_factory=list)


MAX_WAIT_S = 30.0
"""The longest an acquire waits for work (a pilot's long-poll asks for less)."""


def register(
    svc: Services, *, pilot_id: str | None, queue: str, host: str, pid: int | None,
    resources: Resources, version: str, launch_for: str | None = None,
    slots: int | None = None,
) -> tuple[Pilot, Queue]:  # fmt: skip
    """A pilot announces itself: the record the launcher made goes submitted -> running.

    `slots`: payloads the pilot runs at once (None: one per core), for the scaler.
    `launch_for` is set when the caller holds a launch credential: the one pilot it may
    register, and only from submitted. That makes it single use: the compare-and-set below
    expects submitted, so of two registrations with one credential only the first succeeds.

    Raises:
        Forbidden: a launch credential for another pilot, for a new (unnamed) pilot, or spent
            (its pilot has registered already).
        InvalidInput: the queue is unknown or offline.
        NotFound: the named pilot does not exist.
        Conflict: the pilot record has already ended (e.g. declared missed), is registered
            already, or changed while registering.
    """
    if launch_for is not None and pilot_id != launch_for:
        what = "a new pilot" if pilot_id is None else f"pilot {pilot_id}"
        raise Forbidden(f"a launch credential for pilot {launch_for} cannot register {what}",
                        pilot_id=pilot_id, launch_for=launch_for)  # fmt: skip
    try:
        q = svc.fleet.get_queue(queue)
    except NotFound as e:
        raise InvalidInput(f"unknown queue {queue!r}", field="queue") from e
    if not q.online:
        raise InvalidInput(f"queue {queue!r} is offline", field="queue")
    now = svc.clock.now()
    details = {"host": host, "pid": pid, "resources": resources, "version": version,
               "slots": slots}  # fmt: skip
    if pilot_id is None:
        pilot = Pilot(id=new_id("p"), queue=queue, status=PilotStatus.RUNNING, created_at=now,
                      heartbeat_at=now, **details)  # fmt: skip
        svc.fleet.add_pilot(pilot)
        return pilot, q
    known = svc.fleet.get_pilot(pilot_id)
    if launch_for is not None and known.status is not PilotStatus.SUBMITTED:
        raise Forbidden(f"the launch credential for pilot {pilot_id} is spent: the pilot is "
                        f"{known.status} (a pilot registers once)",
                        pilot_id=pilot_id, status=str(known.status))  # fmt: skip
    pilot = known.model_copy(
        update={
            **details,
            "status": advance(known.status, PilotStatus.RUNNING),
            "heartbeat_at": now,
        }
    )
    if not svc.fleet.update_pilot(pilot, [known.status]):
        raise Conflict(f"pilot {pilot_id} changed while registering", pilot_id=pilot_id)
    svc.fleet.heartbeat(pilot_id, now)
    return pilot, q


def _live_pilot(svc: Services, pilot_id: str) -> Pilot:
    pilot = svc.fleet.get_pilot(pilot_id)
    if pilot.status not in PILOT_LIVE:
        raise Conflict(f"pilot {pilot_id} has ended ({pilot.status}); start a new pilot",
                       pilot_id=pilot_id, status=str(pilot.status))  # fmt: skip
    return pilot


def acquire(
    svc: Services, pilot_id: str, n: int, job_id: str | None = None, *, wait_s: float = 0.0,
    max_cores: int | None = None,
) -> list[Job]:  # fmt: skip
    """Hand up to `n` activated jobs that fit the pilot to it (priority, then age); or, for a
    push-mode pilot launched for one job, exactly that job (none if it is no longer activated).
    With `max_cores`, only jobs of at most that many cores (a pilot whose other cores are busy
    with long payloads asks for what it can start now; None: the pilot's cores).

    With `wait_s` (a long-poll; capped at MAX_WAIT_S) and none to hand now, wait for jobs to
    be activated on the pilot's queue (`Doorbell`) and try again, until some are taken or the
    time is up. Where nothing can ring (no doorbell) or enough acquires wait already, it
    answers at once.

    Raises:
        InvalidInput: `n`, `wait_s` or `max_cores` out of range (`max_cores`: 1 to the pilot's
            cores); the named job is on another queue or does not fit.
        NotFound: the pilot, or the named job, does not exist.
        Conflict: the pilot has ended.
    """
    if not 1 <= n <= 1000:
        raise InvalidInput(f"n must be between 1 and 1000, not {n}", field="n")
    if not 0 <= wait_s <= 3600:
        raise InvalidInput(f"wait_s must be between 0 and 3600, not {wait_s:g}", field="wait_s")
    pilot = _within(_live_pilot(svc, pilot_id), max_cores)
    if pilot.drain and job_id is None:
        return []  # draining: it finishes what it holds and takes nothing new
    bell = svc.doorbell if wait_s > 0 and job_id is None else None
    if bell is None:
        return _take(svc, pilot, n, job_id)
    deadline = svc.clock.now() + min(wait_s, MAX_WAIT_S)
    seen = bell.seen(pilot.queue)  # before looking: a ring after the look is not lost
    jobs = _take(svc, pilot, n, None)
    while not jobs:
        if not bell.wait(pilot.queue, seen, deadline - svc.clock.now()):
            return []
        seen = bell.seen(pilot.queue)
        pilot = _within(_live_pilot(svc, pilot_id), max_cores)  # drained or ended meanwhile
        if pilot.drain:
            return []
        # Every waiter of the queue wakes: look (a read) before claiming (a write), as the
        # jobs may be gone already (taken by another waiter, or by a report's acquire)
        if svc.jobs.list_activated(pilot.queue, 1):
            jobs = _take(svc, pilot, n, None)
    return jobs


def _within(pilot: Pilot, max_cores: int | None) -> Pilot:
    """The pilot as an acquire sees it: its resources less the cores it says are busy
    (`max_cores`), so that every claim below (`pilot.resources`) takes only jobs that fit.

    Raises:
        InvalidInput: `max_cores` is not between 1 and the pilot's cores.
    """
    if max_cores is None:
        return pilot
    cores = pilot.resources.cores
    if not 1 <= max_cores <= cores:
        raise InvalidInput(
            f"max_cores must be between 1 and the pilot's {cores} cores, not {max_cores}",
            field="max_cores",
        )
    resources = pilot.resources.model_copy(update={"cores": max_cores})
    return pilot.model_copy(update={"resources": resources})


def _take(svc: Services, pilot: Pilot, n: int, job_id: str | None) -> list[Job]:
    """Claim the jobs for the pilot now (`acquire` without the wait)."""
    pilot_id = pilot.id
    now = svc.clock.now()
    if job_id is not None:
        jobs = _claim_one(svc, pilot, job_id, now)
    else:
        jobs = _claim_fairly(svc, pilot, n, now)
    for task_id in {j.task_id for j in jobs}:
        # (a cached spec decides whether the move is told: `ends`; most calls lose the CAS)
        ready, running = TaskStatus.READY, TaskStatus.RUNNING
        told = task_moved(svc, known.task(svc, task_id), running, previous=ready)
        svc.tasks.set_task_status(task_id, [ready], running, events=told)
    if jobs:
        log.debug("pilot %s acquired %d jobs", pilot_id, len(jobs))
        observe.dispatched(jobs, now)
    return jobs


Sharing = tuple[dict[str, OwnerLoad], dict[str, float]]
"""A queue's owner loads and fair-share weights."""


def _sharing(svc: Services, queue: str) -> Sharing | None:
    """The owner loads and shares of the queue, when several owners have jobs waiting; None
    when at most one does (the usual case: nothing to share). Knowing that costs two
    single-document reads (`waiting_owners`), not a read of every live job of the queue.
    Reused for LOADS_TTL_S (services.Memory)."""
    cached: tuple[Sharing | None] | None = svc.memory.loads.get(queue)
    if cached is not None:
        return cached[0]
    sharing = None
    if len(svc.jobs.waiting_owners(queue, 2)) > 1:
        sharing = (svc.jobs.owner_loads(queue), svc.fleet.get_queue(queue).shares)
    svc.memory.loads[queue] = (sharing,)
    return sharing


def _claim_fairly(svc: Services, pilot: Pilot, n: int, now: float) -> list[Job]:
    """Claim up to `n` jobs, shared between the owners with jobs waiting (fairshare.allocate);
    with one owner waiting (the usual case) this is one plain claim."""
    queue = pilot.queue
    sharing = _sharing(svc, queue)
    if sharing is None:
        return svc.jobs.claim_jobs(queue, pilot.id, n, pilot.resources, now)
    loads, shares = sharing
    jobs: list[Job] = []
    for owner, k in sorted(allocate(n, loads, shares).items()):
        got = svc.jobs.claim_jobs(queue, pilot.id, k, pilot.resources, now, owner=owner)
        load = loads[owner]
        loads[owner] = OwnerLoad(load.running + len(got), max(0, load.waiting - len(got)))
        jobs.extend(got)
    if len(jobs) < n:  # an owner's jobs did not fit the pilot, or the loads were stale
        jobs.extend(svc.jobs.claim_jobs(queue, pilot.id, n - len(jobs), pilot.resources, now))
    return jobs


def _claim_one(svc: Services, pilot: Pilot, job_id: str, now: float) -> list[Job]:
    job = svc.jobs.get_job(job_id)
    if job.queue != pilot.queue:
        raise InvalidInput(
            f"job {job_id} is on queue {job.queue}, not {pilot.queue}", field="job_id"
        )
    if not job.resources.fits(pilot.resources):
        raise InvalidInput(
            f"job {job_id} needs {job.resources.memory_mb} MB x {job.resources.cores} cores; "
            f"the pilot offers {pilot.resources.memory_mb} MB x {pilot.resources.cores}",
            field="job_id",
        )
    if job.status is not JobStatus.ACTIVATED:
        return []  # taken by another pilot, killed, or ended: the push pilot has nothing to do
    change = claim(job, pilot.id, now)
    return [change.after] if svc.jobs.apply_job_changes([change])[0] else []


LOG_CHUNK_BYTES = 4 * 1024 * 1024
"""One chunk of a log at most (pilots send one per `log_flush_interval_s` of their queue, or
per 64 KiB of output: much smaller)."""
LOG_GRACE_S = 120.0
"""A chunk sent just before its job's final report may arrive just after it."""


def append_log(
    svc: Services, job_id: str, attempt: int, chunk: bytes, pilot_id: str | None = None
) -> None:
    """Append a chunk of a running job's output to its attempt's log: only for the job's
    current attempt, while it runs (or just ended), and, from a pilot, only the pilot that
    holds it (`pilot_id`; None: an admin).

    Raises:
        InvalidInput: a chunk over LOG_CHUNK_BYTES. Conflict: not the current attempt, or it
            ended. Forbidden: another pilot holds it.
    """
    if len(chunk) > LOG_CHUNK_BYTES:
        raise InvalidInput(f"a log chunk is limited to {LOG_CHUNK_BYTES:,} bytes", field="log")
    job = svc.jobs.get_job(job_id)
    if attempt != job.attempt:
        raise Conflict(f"job {job_id} is at attempt {job.attempt}, not {attempt}: its log is "
                       "closed", job_id=job_id)  # fmt: skip
    if pilot_id is not None and job.pilot_id != pilot_id:
        raise Forbidden(f"pilot {pilot_id} does not hold job {job_id}")
    ended = job.ended_at is not None and svc.clock.now() - job.ended_at > LOG_GRACE_S
    if job.status not in JOB_LIVE and (job.ended_at is None or ended):
        raise Conflict(f"job {job_id} is {job.status}: its log is closed", job_id=job_id)
    svc.blobs.append(log_key(job_id, attempt), chunk)


def update(
    svc: Services,
    pilot_id: str,
    reports: Sequence[JobReport],
    logs: dict[str, str],
    *,
    acquire_n: int = 0,
    max_cores: int | None = None,
) -> tuple[list[dict[str, Any]], Reply]:
    """Apply a pilot's bulk report. Each report is accepted or refused with a reason; a refused
    one means the pilot no longer holds that attempt and must stop it.

    The critical path in one round trip: the children of the jobs this report ended are
    released in the report's request, in its own commit where the store commits a scope
    together (`JobStore.atomic`), else right after it (Firestore), not on the later delivery
    of job.ended, which then finds them released (compare-and-set); and `acquire_n` > 0
    claims the pilot's next jobs, children included: the reply carries them (`Reply.jobs`;
    none for a draining or ended pilot). The job.ended events are in the outbox all the same,
    for the rollup, the other handlers and recovery (a release that failed here, or a crash
    between the report's commit and the release, is left to their delivery). `max_cores`: of
    the jobs to claim, as `acquire`'s (checked before any report is applied).

    Raises:
        InvalidInput: `max_cores` is not between 1 and the pilot's cores.
    """
    if acquire_n > 0 and max_cores is not None:
        _within(svc.fleet.get_pilot(pilot_id), max_cores)
    results = {r.job_id: _result(r.job_id, True) for r in reports}
    pending = list(reports)
    logs = dict(logs)
    won: list[JobChange] = []
    replayed: list[JobEnded] = []  # ends reported again (`replayed_end`): released again
    with svc.jobs.atomic() as together:
        for _ in range(2):  # a change that lost to a concurrent write is recomputed once
            pending = _apply_reports(
                svc, pilot_id, pending, results, logs, won, replayed, not together
            )
            if not pending:
                break
        ends = (e for c in won for e in c.events if e.type is EventType.JOB_ENDED)
        ended = [JobEnded.model_validate(e.data) for e in ends] + replayed
        released = _release_now(svc, ended) if ended else None
        jobs = _acquire_quietly(svc, pilot_id, acquire_n, max_cores) if acquire_n > 0 else []
        # The scaler hears now, not at its next tick, of the jobs waiting that this pilot did
        # not take: children released, and jobs put back (a retry; held jobs given back by a
        # pilot busy with a long payload, maybe the queue's only one)
        back = [c.after for c in won if c.after.status is JobStatus.ACTIVATED]
        if released or back:
            taken = {j.id for j in jobs}
            release.announce(svc, [j for j in [*(released or ()), *back] if j.id not in taken])
    if ended:  # the delivery of these job.ended skips what was released (release.in_request)
        release.released_in_request(svc, ended, done=released is not None)
    # After the commit: it may start a task-wide bulk, which takes a lock of its own
    _raise_task_memory(svc, won)
    for report in pending:
        results[report.job_id] = _result(report.job_id, False, "the job changed concurrently")
    reply = heartbeat(svc, pilot_id, None, touch=False)
    return list(results.values()), Reply(reply.commands, reply.drain, jobs)


def _release_now(svc: Services, ended: list[JobEnded]) -> list[Job] | None:
    """Release the children of the reported ends in the report's commit (or right after it,
    where the store commits each write on its own). A failure is left to the job.ended events
    (their delivery releases them, and retries): it costs the children some latency, never
    the report (its writes stand; the release's own are one savepoint, `atomic` nested,
    undone, or compare-and-sets that the delivery's release completes). Returns the
    children activated (not yet announced: `release.announce`), None if it failed."""
    try:
        with svc.jobs.atomic():
            return release.release_children_of(svc, ended, nudge=False)
    except SkypandaError as e:
        log.warning("children of %d reported jobs left to their events: %s", len(ended), e)
        return None


def _acquire_quietly(svc: Services, pilot_id: str, n: int, max_cores: int | None) -> list[Job]:
    """`acquire` for an update: a pilot that ended gets no job (its reports still count)."""
    try:
        return acquire(svc, pilot_id, n, max_cores=max_cores)
    except Conflict:
        return []


def _result(job_id: str, accepted: bool, reason: str = "") -> dict[str, Any]:
    return {"job_id": job_id, "accepted": accepted, "reason": reason}


def _apply_reports(
    svc: Services,
    pilot_id: str,
    reports: Sequence[JobReport],
    results: dict[str, Any],
    logs: dict[str, str],
    won: list[JobChange],
    replayed: list[JobEnded],
    flag: bool = False,
) -> list[JobReport]:
    """Read the jobs, compute each report's change, write them; return the reports whose
    write lost a compare-and-set (the job changed between read and write, e.g. killed).
    The changes written are added to `won`, the ends reported again to `replayed`. `flag`:
    the release after the report's commit is flagged on its job.ended events
    (`release.in_request`)."""
    now = svc.clock.now()
    jobs = svc.jobs.get_jobs([r.job_id for r in reports])
    queues: dict[str, Queue] = {}  # read once per batch, for failed reports only
    changes: list[tuple[JobReport, JobChange]] = []
    for report in reports:
        job = jobs.get(report.job_id)
        try:
            if job is None:
                raise NotFound(f"no job with id {report.job_id!r}")
            if (again := replayed_end(job, report, pilot_id)) is not None:
                # accepted, nothing written (its log went with the first send)
                replayed.append(again.model_copy(update={"in_request": flag}))
                continue
            key = log_key(report.job_id, report.attempt)
            uri = svc.blobs.uri(key)
            failed = report.status is JobStatus.FAILED
            retry = _retry_context(svc, job, report.error_code, queues) if failed else None
            change = apply_report(job, report, pilot_id, now, uri, retry)
            change = release.in_request(svc, change) if flag else change
            # Only a report accepted (this pilot holds this attempt) adds to the log; once,
            # and before the job can end (its change is written below).
            text = logs.pop(report.job_id, None)
            if text:
                svc.blobs.append(key, text.encode())
        except (Conflict, NotFound, InvalidInput) as e:
            results[report.job_id] = _result(report.job_id, False, e.message)
            continue
        jobs[job.id] = change.after  # a later report in the same batch sees this one's effect
        changes.append((report, change))
    merged = _merge([c for _, c in changes])
    outcome = dict(zip(merged, svc.jobs.apply_job_changes(list(merged.values())), strict=True))
    written = [c for job_id, c in merged.items() if outcome[job_id]]
    observe.job_changes(written, now)
    won.extend(written)
    return [r for r, _ in changes if not outcome[r.job_id]]


def _raise_task_memory(svc: Services, won: list[JobChange]) -> None:
    """A retry that raised a job's memory: if that now holds for more than 30 % of its task's
    jobs, its queued jobs ask for as much (retry.raise_for_task). One count per such task."""
    raised: dict[str, int] = {}
    for ch in won:
        if ch.after.resources.memory_mb > ch.before.resources.memory_mb:
            raised[ch.after.task_id] = max(
                raised.get(ch.after.task_id, 0), ch.after.resources.memory_mb
            )
    for task_id, memory_mb in raised.items():
        task = known.task(svc, task_id)  # spec and n_jobs never change once split
        above = svc.tasks.count_jobs_above_memory(task_id, task.spec.resources.memory_mb)
        if raise_for_task(above, task.n_jobs):
            n = bulk.start(svc, task, Action.RAISE_MEMORY, {"memory_mb": memory_mb})
            log.info("task %s: %d of %d jobs needed more memory; %s queued jobs now ask "
                     "for %d MB", task_id, above, task.n_jobs, n, memory_mb)  # fmt: skip


# Task id -> its retry rules: a task's spec never changes, so this cannot go stale. Read only
# for failed reports (the success path costs nothing more).
def _retry_context(
    svc: Services, job: Job, error_code: int | None, queues: dict[str, Queue]
) -> RetryContext:
    """What the retry rules need for a failed report; `queues` memoizes queue reads within
    one batch of reports."""
    spec = known.task(svc, job.task_id).spec
    if job.queue not in queues:
        queues[job.queue] = svc.fleet.get_queue(job.queue)
    queue = queues[job.queue]
    limits = Limits(memory_mb=queue.pilot_resources.memory_mb, walltime_s=queue.max_walltime_s)
    others: tuple[Queue, ...] = ()
    if error_code == ErrorCode.OUT_OF_MEMORY and job.resources.memory_mb >= limits.memory_mb:
        # at its queue's maximum: the rules may move it to a bigger queue (rebrokerage)
        others = tuple(q for q in svc.fleet.list_queues() if q.name != job.queue)
    return RetryContext(tuple(spec.retry_rules), limits, spec, others)


def _merge(changes: list[JobChange]) -> dict[str, JobChange]:
    """Fold same-job chains (running then finished) into one compare-and-set write."""
    merged: dict[str, JobChange] = {}
    for ch in changes:
        first = merged.get(ch.after.id)
        events = (first.events if first else ()) + ch.events
        before = first.before if first else ch.before
        merged[ch.after.id] = JobChange(before, ch.after, ch.attempt, events)
    return merged


FORGOTTEN_AFTER_S = 60.0
"""A job claimed for a pilot this long ago that the pilot does not say it holds never reached
it (the acquire reply was lost, e.g. a retried request): it is requeued."""


def heartbeat(
    svc: Services, pilot_id: str, held: Sequence[str] | None, *, touch: bool = True
) -> Reply:
    """Record that the pilot lives; reply with the jobs it must kill and whether to drain.

    `held`, when the pilot sends it, is compared with what the server thinks the pilot holds,
    both ways: a held job that is no longer its live attempt is killed (never two live
    attempts), and a job the server gave it long ago but it does not hold is requeued."""
    held = list(held) if held is not None else None
    now = svc.clock.now()
    drain = False
    if touch:
        record = svc.fleet.heartbeat(pilot_id, now)
        if record is None:
            svc.fleet.get_pilot(pilot_id)  # NotFound for an unknown pilot
            return Reply([{"kill": j} for j in held or []], drain=True)
        drain = record.drain
    kill = set(svc.jobs.jobs_to_kill(pilot_id))
    if held is not None and touch:
        live = svc.jobs.live_jobs_of_pilot(pilot_id)
        kill |= set(held) - {j.id for j in live}
        _requeue_forgotten(svc, [j for j in live if j.id not in set(held)], now)
    return Reply([{"kill": j} for j in sorted(kill)], drain=drain)


def drain(svc: Services, pilot_id: str) -> Pilot:
    """Ask a pilot to drain: its next heartbeat reply says so; it finishes the jobs it holds,
    takes no new one and exits. Idempotent.

    Raises:
        NotFound: no such pilot.
        Conflict: the pilot has ended.
    """
    pilot = _live_pilot(svc, pilot_id)
    if pilot.drain:
        return pilot
    wanted = pilot.model_copy(update={"drain": True})
    if not svc.fleet.update_pilot(wanted, [pilot.status]):
        raise Conflict(f"pilot {pilot_id} changed while being drained; try again")
    return wanted


def _requeue_forgotten(svc: Services, candidates: list[Job], now: float) -> None:
    forgotten = [j for j in candidates if (j.started_at or now) < now - FORGOTTEN_AFTER_S]
    if forgotten:
        code = ErrorCode.NEVER_DELIVERED
        uri = svc.blobs.uri
        changes = [requeue_lost(j, now, uri(log_key(j.id, j.attempt)), code) for j in forgotten]
        svc.jobs.apply_job_changes(changes)
        log.warning("requeued %d jobs their pilot never received", len(forgotten))


PILOT_ENDS = frozenset(
    {PilotStatus.FINISHED, PilotStatus.FAILED, PilotStatus.CANCELLED, PilotStatus.DISCONNECTED}
)
"""How a pilot may say it ends."""

OUTAGE_CODE = ErrorCode.SERVER_UNREACHABLE
"""What the attempts a disconnected pilot held end with: a code that is not counted against
max_attempts (a server outage is not the job's fault)."""


def end(svc: Services, pilot_id: str, status: PilotStatus, reason: str) -> Pilot:
    """A pilot exits: finished (idle, drained, done), failed (an error), cancelled (stopped
    from outside: SIGTERM on eviction or preemption, Ctrl-C) or disconnected (it gave up on a
    server it could not reach for its whole outage budget). Jobs it still holds are requeued
    as new attempts."""
    if status not in PILOT_ENDS:
        raise InvalidInput(
            "a pilot ends as finished, failed, cancelled or disconnected", field="status"
        )
    pilot = svc.fleet.get_pilot(pilot_id)
    return retire(svc, pilot, status, reason)


def _stop_silent(svc: Services, pilot_id: str) -> None:
    """Ask the launcher to stop a pilot that went silent, and whatever payloads it left running
    (it may be alive but cut off, or dead with its payloads orphaned)."""
    if svc.launcher is None:
        return
    try:
        svc.launcher.stop(pilot_id)
    except SkypandaError as e:
        log.warning("pilot %s: could not stop it: %s", pilot_id, e.message)


def retire(svc: Services, pilot: Pilot, status: PilotStatus, reason: str) -> Pilot:
    """End a pilot record (if still live) and requeue the live jobs it held: a counted attempt
    (lost heartbeat), unless the pilot disconnected (the server was unreachable)."""
    now = svc.clock.now()
    if pilot.status in PILOT_LIVE:
        done = pilot.model_copy(
            update={"status": advance(pilot.status, status), "ended_at": now, "reason": reason}
        )
        if svc.fleet.update_pilot(done, [pilot.status]):
            pilot = done
            observe.pilot_ended(done, reason)
    held = svc.jobs.live_jobs_of_pilot(pilot.id)
    if status in (PilotStatus.MISSED, PilotStatus.DISCONNECTED):
        _stop_silent(svc, pilot.id)  # before its jobs run elsewhere: never two runs at once
    if held:
        code = OUTAGE_CODE if status is PilotStatus.DISCONNECTED else ErrorCode.LOST_HEARTBEAT
        uri = svc.blobs.uri
        changes = [requeue_lost(j, now, uri(log_key(j.id, j.attempt)), code) for j in held]
        written = svc.jobs.apply_job_changes(changes)
        observe.job_changes([c for c, ok in zip(changes, written, strict=True) if ok], now)
        log.warning("pilot %s ended (%s): requeued %d jobs", pilot.id, reason, len(held))
    return pilot
