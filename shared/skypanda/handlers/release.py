"""release: on job.ended, release the job's children, roll its task up, advance its workflow.

Cost per event (DESIGN laws 5 and 6): the job's edges are marked and each child is checked with
two indexed existence queries (any parent pending? any parent ended badly?), so the work grows
with the job's children, never with the workflow; a job whose task can have no children (a
plain task, or a workflow task nothing depends on job by job) skips the edges altogether. A
child leaves `defined` by compare-and-set, so it is activated (or cancelled, missing a parent)
exactly once whatever the order and duplication of events. The task rollup is one indexed
existence check; only when nothing is left does it read the task and count its jobs
(aggregations, once per task). No counter document is written per job.

The ends of jobs whose task opted in (`notify_on: [job_end]`, its own or its workflow's) are
handed to `notify.job_ends`; the choice is read from the task spec cached per process (`known`),
so the ends of tasks that did not opt in pay one cached lookup per task and batch.

Events can be handled one by one (a Cloud Function per event) or in batches (the local router):
a batch does the same steps with one transaction per step instead of one per event.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from skypanda.domain import events as ev
from skypanda.domain.dag import ParentsState, child_status, missing_parent
from skypanda.domain.errors import SkypandaError
from skypanda.domain.events import JobEnded
from skypanda.domain.jobflow import JobChange
from skypanda.domain.models import Job
from skypanda.domain.states import JobStatus, advance
from skypanda.handlers import known, notify, workflow
from skypanda.handlers.services import Services

log = logging.getLogger(__name__)


def handle(svc: Services, ended: JobEnded) -> None:
    release(svc, [ended])


def handle_batch(svc: Services, ended: Sequence[JobEnded]) -> None:
    release(svc, ended)


def release(svc: Services, ended: Sequence[JobEnded]) -> None:
    done = svc.memory.released  # released in their report's request (in this process)
    todo = [e for e in ended if (e.job_id, e.attempt) not in done and not e.in_request]
    if todo:
        release_children_of(svc, todo)
    told = {t for t in dict.fromkeys(e.task_id for e in ended) if notify.job_end_notified(svc, t)}
    if told:  # before the rollup: the task's end is then told after its last job's
        notify.job_ends(svc, [e for e in ended if e.task_id in told])
    for task_id in dict.fromkeys(e.task_id for e in ended):
        workflow.roll_up_and_advance(svc, task_id)


def release_children_of(
    svc: Services, ended: Sequence[JobEnded], *, nudge: bool = True
) -> list[Job]:
    """The children step of `release` alone: dispatch runs it in the commit of the report
    that ended the jobs (`dispatch.update`), so a child is ready in the reply to that report;
    the job.ended event's delivery then finds it released already (compare-and-set).
    Returns the children it activated (`nudge`: see `release_children`)."""
    parents = [e.job_id for e in ended if _may_have_children(svc, e.task_id)]
    return release_children(svc, parents, nudge=nudge)


def in_request(svc: Services, change: JobChange) -> JobChange:
    """A report's change, its job.ended flagged `in_request` if the job may have children:
    where the store cannot commit the release with the report (Firestore), dispatch releases
    them right after the report's commit, in the same request. The release function that
    the event reaches (Eventarc, in another instance) then skips the children step, which
    would only find them released (about five billed reads a parent), whatever the order
    of the two. Recovery: the request says when it is done (`released_in_request`); an
    event it never said so of (the request died in between) is sent again by the sweep
    (`Outbox.lost_events`), without the flag, and released in full."""
    if not change.events:
        return change
    events = tuple(
        ev.job_ended(e.data["job_id"], e.data["attempt"], e.data["task_id"], e.data["status"],
                     in_request=True)
        if e.type is ev.EventType.JOB_ENDED and _may_have_children(svc, e.data["task_id"])
        else e
        for e in change.events
    )  # fmt: skip
    return replace(change, events=events)


def released_in_request(svc: Services, ended: Sequence[JobEnded], *, done: bool) -> None:
    """The report's request released the children of `ended` (`done`), or failed to: the
    delivery of their job.ended skips what was done (here: `Memory.released`; elsewhere:
    the events flagged `in_request`, said done to the store, `Outbox.mark_released`). A
    failed release of flagged ends is sent on at once, unflagged, to be released in full.
    A failure to say so is only logged: the sweep sends those events again (a second
    pass, which finds the children released)."""
    if done:
        svc.memory.released.update(((e.job_id, e.attempt), True) for e in ended)
    flagged = [e for e in ended if e.in_request]
    if not flagged:
        return
    unflagged = [ev.job_ended(e.job_id, e.attempt, e.task_id, e.status) for e in flagged]
    try:
        if not done:
            svc.bus.publish(unflagged)
        svc.outbox.mark_released([e.id for e in unflagged])
    except SkypandaError as e:
        log.warning("release of %d reported ends not said done (the sweep sends them again): "
                    "%s", len(flagged), e)  # fmt: skip


def _may_have_children(svc: Services, task_id: str) -> bool:
    """Whether the task's jobs may be parents of other jobs. Not those of a plain task (not
    in a workflow: only workflow tasks' jobs have parents, in their own workflow), nor of a
    workflow task no job depends on (`CompiledWorkflow.has_job_children`): their ends skip
    the store's search for edges (a billed read each on Firestore), which would find none.
    Both facts are fixed when the task is made, and read once per process (`known`)."""
    task = known.task(svc, task_id)
    if task.workflow_id is None:
        return False
    return known.compiled(svc, task.workflow_id).has_job_children(task.spec.name)


# -- children -----------------------------------------------------------------------------------


def release_children(svc: Services, parent_ids: Sequence[str], *, nudge: bool = True) -> list[Job]:
    """Activate (or cancel) the children of ended jobs whose parents have all ended.
    Returns the children it activated, announced to the scaler (`nudge`) or, with
    nudge=False, left to the caller to announce (`announce`): dispatch announces only those
    that its pilot's acquire, in the same commit, did not take."""
    states = svc.workflows.release_children(parent_ids)
    ready = [c for c, st in states.items() if not st.pending]
    if not ready:
        return []
    now = svc.clock.now()
    changes: list[JobChange] = []
    for job in svc.jobs.get_jobs(ready).values():
        if job.status is JobStatus.DEFINED:
            change = _release(svc, job, states[job.id], now)
            activates = change is not None and change.after.status is JobStatus.ACTIVATED
            if activates and known.paused(svc, job.task_id):
                continue  # its task's resume activates it
            if change is not None:
                changes.append(change)
    won = [c for c, ok in zip(changes, svc.jobs.apply_job_changes(changes), strict=True) if ok]
    activated = [c.after for c in won if c.after.status is JobStatus.ACTIVATED]
    if nudge:
        announce(svc, activated)
    return activated


def announce(svc: Services, activated: Sequence[Job]) -> None:
    """Tell the scaler of activated jobs waiting (released, or put back by a report): one
    jobs.activated event per queue, keyed by its first job's attempt (a job put back once
    more is news again)."""
    queues: dict[str, list[Job]] = {}
    for job in activated:
        queues.setdefault(job.queue, []).append(job)
    if queues:
        svc.outbox.add_events([
            ev.jobs_activated(q, len(jobs), key=f"release:{jobs[0].id}:{jobs[0].attempt}")
            for q, jobs in queues.items()
        ])  # fmt: skip


def _release(svc: Services, job: Job, parents: ParentsState, now: float) -> JobChange | None:
    goes_on = False
    if parents.failed:
        task = known.task(svc, job.task_id)
        wf_id, name = task.workflow_id, task.spec.name
        goes_on = wf_id is not None and known.compiled(svc, wf_id).continues(name)
    status = child_status(parents, continue_on_failure=goes_on)
    if status is None:
        return None
    if status is JobStatus.ACTIVATED:
        after = job.model_copy(update={"status": advance(job.status, status), "updated_at": now})
        return JobChange(job, after)
    after = job.model_copy(
        update={
            "status": advance(job.status, status),
            "updated_at": now,
            "ended_at": now,
            "error_diag": missing_parent(parents),
        }
    )
    ended = ev.job_ended(job.id, job.attempt, job.task_id, str(status))
    return JobChange(job, after, None, (ended,))
