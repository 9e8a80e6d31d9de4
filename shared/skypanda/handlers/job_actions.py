"""Job actions: kill one job, or a list of them (PanDA's killJobs), each checked against
ownership (the job's task's owner, or an admin).

What a kill does to a job is decided in `domain.job_kill`; here the jobs are read once, the
changes written compare-and-set in one batch, and a job that changed between the read and
the write (a pilot claimed it, reported on it) is read and decided again. A cancelled job's
`job.ended` event goes in the same commit, so its task's rollup, its children's release and
notifications follow through the outbox as for any end; a flagged job's pilot learns of the
kill from its next heartbeat or update reply. Idempotent: a job being killed or ended is
reported so, and nothing is written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from skypanda.domain import job_kill
from skypanda.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from skypanda.domain.job_kill import MAX_KILL_JOBS, WRITTEN, JobKill, KillResult
from skypanda.domain.jobflow import JobChange
from skypanda.handlers.services import Services

log = logging.getLogger(__name__)

ROUNDS = 5
"""Reads and writes of a job that keeps changing between the two before the kill gives up
(each lost round means a pilot moved the job meanwhile: a few at most)."""


def kill_jobs(
    svc: Services,
    job_ids: Sequence[str],
    owner: str,
    *,
    admin: bool = False,
    reason: str | None = None,
) -> list[JobKill]:
    """Kill each job of `job_ids` that `owner` may kill: one result per distinct id, in the
    order given (killed, kill requested, being killed, ended, not found, not yours).

    Raises:
        InvalidInput: more than MAX_KILL_JOBS distinct ids.
        Conflict: a job kept changing while being killed (try again: nothing is undone).
    """
    ids = list(dict.fromkeys(job_ids))
    if len(ids) > MAX_KILL_JOBS:
        raise InvalidInput(job_kill.too_many(len(ids)), field="job_ids")
    why = reason or f"killed by {owner}"
    results: dict[str, JobKill] = {}
    todo = [i for i in ids if job_kill.may_be_a_job_id(i)]
    results.update((i, job_kill.not_found(i)) for i in ids if not job_kill.may_be_a_job_id(i))
    rounds = 0
    while todo and rounds < ROUNDS:
        todo = _round(svc, todo, owner, admin, why, results)
        rounds += 1
    if todo:
        raise Conflict(f"job {todo[0]} kept changing while being killed; try again",
                       job_id=todo[0])  # fmt: skip
    done = [results[i] for i in ids]
    written = sum(r.result in WRITTEN for r in done)
    if written:
        log.info("%s killed %d jobs (%d asked)", owner, written, len(ids))
    return done


def _round(
    svc: Services,
    ids: list[str],
    owner: str,
    admin: bool,
    reason: str,
    results: dict[str, JobKill],
) -> list[str]:
    """Read the jobs, decide each kill, write the changes; return the ids whose write lost
    its compare-and-set (to be read again)."""
    jobs = svc.jobs.get_jobs(ids)
    now = svc.clock.now()
    changes: list[JobChange] = []
    for job_id in ids:
        job = jobs.get(job_id)
        if job is None:
            results[job_id] = job_kill.not_found(job_id)
        elif not admin and job.owner != owner:
            results[job_id] = job_kill.not_yours(job, owner)
        else:
            change = job_kill.kill(job, now, reason)
            results[job_id] = job_kill.outcome(job, change)
            if change is not None:
                changes.append(change)
    if not changes:
        return []
    won = svc.jobs.apply_job_changes(changes)
    return [c.before.id for c, ok in zip(changes, won, strict=True) if not ok]


def kill_job(svc: Services, job_id: str, owner: str, *, admin: bool = False) -> JobKill:
    """Kill one job (see `kill_jobs`).

    Raises:
        NotFound: no such job. Forbidden: someone else's, and `owner` is no admin.
        Conflict: it kept changing while being killed.
    """
    (done,) = kill_jobs(svc, [job_id], owner, admin=admin)
    if done.result is KillResult.NOT_FOUND:
        raise NotFound(done.message, job_id=job_id)
    if done.result is KillResult.NOT_YOURS:
        raise Forbidden(done.message)
    return done
