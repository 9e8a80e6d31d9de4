"""State machines: one enum and one transition table each, and one function that applies them.

Names and meanings follow PanDA (jobs, JEDI tasks) and Harvester (workers = our pilots).
Nothing outside this module compares status strings: callers ask `advance()` for a transition
and use the sets below (`FINAL`, `LIVE`, ...) for questions about a state.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from skypanda.domain.errors import IllegalTransition


class JobStatus(StrEnum):
    """A job's state (PanDA's job states)."""

    DEFINED = "defined"  # waiting for its parents
    ACTIVATED = "activated"  # ready to be dispatched to a pilot
    SENT = "sent"  # handed to a pilot
    STARTING = "starting"  # the pilot is staging in / setting up
    RUNNING = "running"  # the payload runs
    FINISHED = "finished"  # the payload succeeded
    FAILED = "failed"  # failed for good (no attempt left, or not retryable)
    CANCELLED = "cancelled"  # killed by a user or because its task was aborted
    CLOSED = "closed"  # closed by the system without running (task ended around it)


class TaskStatus(StrEnum):
    """A task's state (JEDI's task states)."""

    PENDING = "pending"  # no queue fits it yet (brokered again on queue changes), or it waits
    # for its start_after trigger to end (domain.chain): stored unsplit
    REGISTERED = "registered"  # stored, not yet split
    READY = "ready"  # split into jobs, none dispatched yet
    RUNNING = "running"  # some job was dispatched
    PAUSED = "paused"  # a user paused it: none of its jobs is dispatched until resumed
    DONE = "done"  # every job finished
    FINISHED = "finished"  # ended with some jobs failed; the task allows partial success
    FAILED = "failed"  # ended with failed jobs (or could not be split)
    ABORTED = "aborted"  # killed by a user
    SKIPPED = "skipped"  # in a workflow: its condition did not hold (or a task it needs skipped);
    # alone: its start_after trigger ended with another status (never started)
    CANCELLED = "cancelled"  # in a workflow: not run because a task it needs failed


class WorkflowStatus(StrEnum):
    """A workflow's state (an iDDS request's states, simplified)."""

    REGISTERED = "registered"  # stored with its tasks; jobs not made yet
    RUNNING = "running"  # jobs made; tasks are being released
    DONE = "done"  # every task done or skipped
    FAILED = "failed"  # some task failed or was cancelled (a user may retry)
    ABORTED = "aborted"  # killed by a user
    SKIPPED = "skipped"  # never started: its start_after trigger ended with another status


class PilotStatus(StrEnum):
    """A pilot's state (Harvester's worker states)."""

    SUBMITTED = "submitted"  # launched, not yet heard from
    RUNNING = "running"  # registered and heartbeating
    FINISHED = "finished"  # exited cleanly (idle timeout, drained)
    FAILED = "failed"  # exited with an error
    MISSED = "missed"  # went silent, or vanished from the launcher's view
    CANCELLED = "cancelled"  # stopped by the scaler or by shutdown
    # Left, or went silent, because the server was unreachable (an outage, a restart): not
    # the pilot's fault, so neither its jobs' attempts nor the scaler's back-off count it.
    DISCONNECTED = "disconnected"


S = TypeVar("S", JobStatus, TaskStatus, PilotStatus, WorkflowStatus)

_J = JobStatus
JOB_TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    _J.DEFINED: frozenset({_J.ACTIVATED, _J.CANCELLED, _J.CLOSED}),
    # Activated -> defined: its task was paused (it waits again, for the resume).
    _J.ACTIVATED: frozenset({_J.SENT, _J.CANCELLED, _J.CLOSED, _J.DEFINED}),
    # From a live state a job may go back to activated: a new attempt (retry, lost pilot).
    _J.SENT: frozenset(
        {_J.STARTING, _J.RUNNING, _J.FINISHED, _J.FAILED, _J.ACTIVATED, _J.CANCELLED}
    ),
    _J.STARTING: frozenset({_J.RUNNING, _J.FINISHED, _J.FAILED, _J.ACTIVATED, _J.CANCELLED}),
    _J.RUNNING: frozenset({_J.FINISHED, _J.FAILED, _J.ACTIVATED, _J.CANCELLED}),
    # A user's retry of a failed or cancelled job starts a new attempt.
    # (or, in a workflow, waits again for parents that run again: defined).
    _J.FAILED: frozenset({_J.ACTIVATED, _J.DEFINED}),
    _J.CANCELLED: frozenset({_J.ACTIVATED, _J.DEFINED}),
    _J.FINISHED: frozenset(),
    _J.CLOSED: frozenset(),
}

_T = TaskStatus
TASK_TRANSITIONS: Mapping[TaskStatus, frozenset[TaskStatus]] = {
    # Placed on a queue (or its start_after trigger ended as wanted), killed, or not started
    # (its start_after trigger ended otherwise: skipped).
    _T.PENDING: frozenset({_T.REGISTERED, _T.ABORTED, _T.SKIPPED}),
    _T.REGISTERED: frozenset({_T.READY, _T.FAILED, _T.ABORTED, _T.SKIPPED, _T.CANCELLED}),
    _T.READY: frozenset({_T.RUNNING, _T.DONE, _T.FINISHED, _T.FAILED, _T.ABORTED, _T.PAUSED}),
    _T.RUNNING: frozenset({_T.DONE, _T.FINISHED, _T.FAILED, _T.ABORTED, _T.PAUSED}),
    _T.PAUSED: frozenset({_T.RUNNING, _T.ABORTED}),
    _T.DONE: frozenset(),
    _T.FINISHED: frozenset(),
    # A user's retry: failed jobs run again (failed), or the task waits for its inputs again.
    _T.FAILED: frozenset({_T.RUNNING}),
    _T.CANCELLED: frozenset({_T.REGISTERED}),
    _T.SKIPPED: frozenset(),
    # A user's retry of a killed task: its cancelled jobs run again; in a workflow, one killed
    # before its jobs were made waits for its inputs again.
    _T.ABORTED: frozenset({_T.RUNNING, _T.REGISTERED}),
}

_W = WorkflowStatus
WORKFLOW_TRANSITIONS: Mapping[WorkflowStatus, frozenset[WorkflowStatus]] = {
    _W.REGISTERED: frozenset({_W.RUNNING, _W.FAILED, _W.ABORTED, _W.SKIPPED}),
    _W.RUNNING: frozenset({_W.DONE, _W.FAILED, _W.ABORTED}),
    _W.DONE: frozenset(),
    _W.FAILED: frozenset({_W.RUNNING, _W.ABORTED}),  # a user's retry, or kill
    _W.ABORTED: frozenset({_W.RUNNING}),  # a user's retry
    _W.SKIPPED: frozenset(),
}

_P = PilotStatus
PILOT_TRANSITIONS: Mapping[PilotStatus, frozenset[PilotStatus]] = {
    _P.SUBMITTED: frozenset(
        {_P.RUNNING, _P.FINISHED, _P.FAILED, _P.MISSED, _P.CANCELLED, _P.DISCONNECTED}
    ),
    _P.RUNNING: frozenset({_P.FINISHED, _P.FAILED, _P.MISSED, _P.CANCELLED, _P.DISCONNECTED}),
    _P.FINISHED: frozenset(),
    _P.FAILED: frozenset(),
    _P.MISSED: frozenset(),
    _P.CANCELLED: frozenset(),
    _P.DISCONNECTED: frozenset(),
}

_TABLES: dict[type[StrEnum], Mapping[object, frozenset[object]]] = {
    JobStatus: JOB_TRANSITIONS,  # type: ignore[dict-item]
    TaskStatus: TASK_TRANSITIONS,  # type: ignore[dict-item]
    PilotStatus: PILOT_TRANSITIONS,  # type: ignore[dict-item]
    WorkflowStatus: WORKFLOW_TRANSITIONS,  # type: ignore[dict-item]
}


def allowed(current: S, target: S) -> bool:
    """Whether the state machine of `current` allows going to `target`."""
    return type(current) is type(target) and target in _TABLES[type(current)][current]


def advance(current: S, target: S) -> S:
    """Apply a transition: return `target` if allowed.

    Raises:
        IllegalTransition: the machine has no edge from `current` to `target`.
    """
    if not allowed(current, target):
        raise IllegalTransition(type(current).__name__, str(current), str(target))
    return target


def sources(target: S) -> frozenset[S]:
    """Every state from which `target` may be reached (what a compare-and-set expects)."""
    table = _TABLES[type(target)]
    return frozenset(s for s, nexts in table.items() if target in nexts)  # type: ignore[misc]


JOB_FINAL: frozenset[JobStatus] = frozenset(s for s, n in JOB_TRANSITIONS.items() if not n) | {
    _J.FAILED,
    _J.CANCELLED,
}
"""Job states in which a job has ended (failed and cancelled can only be left by a user's retry)."""
JOB_QUEUED: frozenset[JobStatus] = frozenset({_J.DEFINED, _J.ACTIVATED})
JOB_LIVE: frozenset[JobStatus] = frozenset({_J.SENT, _J.STARTING, _J.RUNNING})
"""Job states in which an attempt is held by a pilot."""
TASK_FINAL: frozenset[TaskStatus] = frozenset(s for s, n in TASK_TRANSITIONS.items() if not n) | {
    _T.FAILED,
    _T.CANCELLED,
    _T.ABORTED,
}
"""Task states in which a task has ended (failed, cancelled and aborted can only be left by a
retry)."""
TASK_UNENDED: frozenset[TaskStatus] = frozenset(TaskStatus) - TASK_FINAL
"""Task states of a task still under way (what an owner's limits count: `domain.quota`)."""
TASK_RETRYABLE: frozenset[TaskStatus] = frozenset({_T.FAILED, _T.ABORTED})
"""Ended tasks a user may retry (a workflow's cancelled tasks are retried with it)."""
TASK_OK: frozenset[TaskStatus] = frozenset({_T.DONE, _T.FINISHED})
"""Ended tasks whose outputs exist: what a dependent task needs."""
WORKFLOW_FINAL: frozenset[WorkflowStatus] = frozenset(
    s for s, n in WORKFLOW_TRANSITIONS.items() if not n
) | {_W.FAILED, _W.ABORTED}
WORKFLOW_RETRYABLE: frozenset[WorkflowStatus] = frozenset({_W.FAILED, _W.ABORTED})
"""Ended workflows a user may retry."""
PILOT_FINAL: frozenset[PilotStatus] = frozenset(s for s, n in PILOT_TRANSITIONS.items() if not n)
PILOT_LIVE: frozenset[PilotStatus] = frozenset({_P.SUBMITTED, _P.RUNNING})
