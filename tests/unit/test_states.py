"""Specification of the three state machines (jobs, tasks, pilots) in `skypanda.domain.states`.

Each machine is one enum plus one transition table; `advance()` is the only way to move. These
tests check every (current, target) pair of every machine, so a new edge or a missing one is
always a deliberate change to this file as well.
"""

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skypanda.domain.errors import Conflict, IllegalTransition, SkypandaError
from skypanda.domain.states import (
    JOB_FINAL,
    JOB_LIVE,
    JOB_QUEUED,
    JOB_TRANSITIONS,
    PILOT_FINAL,
    PILOT_LIVE,
    PILOT_TRANSITIONS,
    TASK_FINAL,
    TASK_TRANSITIONS,
    WORKFLOW_FINAL,
    WORKFLOW_TRANSITIONS,
    JobStatus,
    PilotStatus,
    TaskStatus,
    WorkflowStatus,
    advance,
    allowed,
    sources,
)

TABLES: dict[type[StrEnum], Mapping[Any, frozenset[Any]]] = {
    JobStatus: JOB_TRANSITIONS,
    TaskStatus: TASK_TRANSITIONS,
    PilotStatus: PILOT_TRANSITIONS,
    WorkflowStatus: WORKFLOW_TRANSITIONS,
}


def _pairs(legal: bool) -> list[object]:
    return [
        pytest.param(current, target, id=f"{machine.__name__}:{current}->{target}")
        for machine, table in TABLES.items()
        for current in machine
        for target in machine
        if (target in table[current]) is legal
    ]


LEGAL_PAIRS = _pairs(legal=True)
ILLEGAL_PAIRS = _pairs(legal=False)
CROSS_MACHINE_PAIRS = [
    pytest.param(a, b, id=f"{type(a).__name__}.{a}->{type(b).__name__}.{b}")
    for machine_a in TABLES
    for machine_b in TABLES
    if machine_a is not machine_b
    for a in machine_a
    for b in machine_b
]


# --- the tables themselves ------------------------------------------------------------------


@pytest.mark.parametrize("machine", list(TABLES), ids=lambda m: m.__name__)
def test_every_state_has_a_row_in_its_table(machine: type[StrEnum]) -> None:
    # Given a machine, When we look at its table, Then every state has a row and no row is foreign
    table = TABLES[machine]
    assert set(table) == set(machine)
    for exits in table.values():
        assert all(type(target) is machine for target in exits)


@pytest.mark.parametrize("machine", list(TABLES), ids=lambda m: m.__name__)
def test_no_state_transitions_to_itself(machine: type[StrEnum]) -> None:
    # Given any state, Then "moving" to the same state is not an edge (a no-op is not a transition)
    for state in machine:
        assert state not in TABLES[machine][state]


# --- advance(): every pair ------------------------------------------------------------------


@pytest.mark.parametrize(("current", "target"), LEGAL_PAIRS)
def test_advance_returns_target_for_every_edge_in_the_table(
    current: StrEnum, target: StrEnum
) -> None:
    # Given an edge of the table, When we advance along it, Then we get the target back
    assert allowed(current, target)
    assert advance(current, target) is target


@pytest.mark.parametrize(("current", "target"), ILLEGAL_PAIRS)
def test_advance_raises_for_every_pair_not_in_the_table(current: StrEnum, target: StrEnum) -> None:
    # Given a pair that is not an edge of the table
    machine = type(current).__name__
    assert not allowed(current, target)

    # When we try to advance, Then IllegalTransition names the machine, the source and the target
    expected = f"{machine}: cannot go from {str(current)!r} to {str(target)!r}"
    with pytest.raises(IllegalTransition, match=re.escape(expected)) as info:
        advance(current, target)
    err = info.value
    assert err.context == {"machine": machine, "current": str(current), "target": str(target)}
    # And it is a (non-retryable) conflict in the error tree, mapped to HTTP 409
    assert isinstance(err, Conflict)
    assert isinstance(err, SkypandaError)
    assert err.http_status == 409
    assert err.retryable is False


@pytest.mark.parametrize(("current", "target"), CROSS_MACHINE_PAIRS)
def test_advance_refuses_to_mix_machines(current: StrEnum, target: StrEnum) -> None:
    # Given states of two different machines (some are string-equal, e.g. "running"),
    # When we advance from one to the other, Then it raises instead of comparing strings
    with pytest.raises(IllegalTransition, match=type(current).__name__):
        advance(current, target)


def test_allowed_never_says_yes_across_machines() -> None:
    # Given every pair of states from two different machines
    # When we ask allowed(), Then none is allowed (the machines share value strings, not edges)
    offenders = [
        (a, b)
        for machine_a in TABLES
        for machine_b in TABLES
        if machine_a is not machine_b
        for a in machine_a
        for b in machine_b
        if allowed(a, b)
    ]
    assert offenders == []


# --- final, live and queued sets -------------------------------------------------------------


def test_task_final_states_are_those_without_exits_and_the_retryable_ones() -> None:
    assert {
        TaskStatus.DONE,
        TaskStatus.FINISHED,
        TaskStatus.FAILED,
        TaskStatus.ABORTED,
        TaskStatus.SKIPPED,
        TaskStatus.CANCELLED,
    } == TASK_FINAL
    # Failed and cancelled (in a workflow) are left only by a user's retry
    assert TASK_TRANSITIONS[TaskStatus.FAILED] == {TaskStatus.RUNNING}
    assert TASK_TRANSITIONS[TaskStatus.CANCELLED] == {TaskStatus.REGISTERED}
    # A killed task is retried too: its cancelled jobs run (or, in a workflow, it waits again)
    assert TASK_TRANSITIONS[TaskStatus.ABORTED] == {TaskStatus.RUNNING, TaskStatus.REGISTERED}
    for state in TASK_FINAL - {TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.ABORTED}:
        assert TASK_TRANSITIONS[state] == frozenset()
    for state in set(TaskStatus) - TASK_FINAL:
        assert TASK_TRANSITIONS[state]


def test_workflow_final_states() -> None:
    assert {
        WorkflowStatus.DONE,
        WorkflowStatus.FAILED,
        WorkflowStatus.ABORTED,
        WorkflowStatus.SKIPPED,  # never started: its start_after trigger ended otherwise
    } == WORKFLOW_FINAL
    # A failed workflow is retried (running again) or killed
    assert WORKFLOW_TRANSITIONS[WorkflowStatus.FAILED] == {
        WorkflowStatus.RUNNING,
        WorkflowStatus.ABORTED,
    }
    # A killed workflow is retried (running again)
    assert WORKFLOW_TRANSITIONS[WorkflowStatus.ABORTED] == {WorkflowStatus.RUNNING}


def test_pilot_final_states_are_exactly_those_without_exits() -> None:
    assert {
        PilotStatus.FINISHED,
        PilotStatus.FAILED,
        PilotStatus.MISSED,
        PilotStatus.CANCELLED,
        PilotStatus.DISCONNECTED,
    } == PILOT_FINAL
    for state in PILOT_FINAL:
        assert PILOT_TRANSITIONS[state] == frozenset()
    for state in set(PilotStatus) - PILOT_FINAL:
        assert PILOT_TRANSITIONS[state]


def test_job_final_states_can_only_be_left_by_a_new_attempt() -> None:
    # Given the job states in which a job has ended
    assert {
        JobStatus.FINISHED,
        JobStatus.CLOSED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    } == JOB_FINAL
    # Then finished and closed are terminal
    assert JOB_TRANSITIONS[JobStatus.FINISHED] == frozenset()
    assert JOB_TRANSITIONS[JobStatus.CLOSED] == frozenset()
    # And failed and cancelled are left only by a user's retry: activated, or defined when
    # the job waits again for parents that run again
    assert JOB_TRANSITIONS[JobStatus.FAILED] == {JobStatus.ACTIVATED, JobStatus.DEFINED}
    assert JOB_TRANSITIONS[JobStatus.CANCELLED] == {JobStatus.ACTIVATED, JobStatus.DEFINED}


def test_job_states_are_partitioned_into_queued_live_and_final() -> None:
    # Every job state is exactly one of: waiting for a pilot, held by a pilot, ended
    assert set(JobStatus) == JOB_QUEUED | JOB_LIVE | JOB_FINAL
    assert not JOB_QUEUED & JOB_LIVE
    assert not JOB_QUEUED & JOB_FINAL
    assert not JOB_LIVE & JOB_FINAL


def test_pilot_states_are_partitioned_into_live_and_final() -> None:
    assert set(PilotStatus) == PILOT_LIVE | PILOT_FINAL
    assert not PILOT_LIVE & PILOT_FINAL


@pytest.mark.parametrize("state", sorted(JOB_LIVE))
def test_a_live_job_can_end_or_be_requeued_as_a_new_attempt(state: JobStatus) -> None:
    # Given a job held by a pilot, Then it can finish, fail, be cancelled, or go back to activated
    # (retry, lost pilot)
    assert {
        JobStatus.FINISHED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.ACTIVATED,
    } <= JOB_TRANSITIONS[state]


# --- sources(): the inverse of the table -----------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [pytest.param(s, id=f"{type(s).__name__}.{s}") for machine in TABLES for s in machine],
)
def test_sources_is_the_inverse_of_the_table(target: StrEnum) -> None:
    # Given a target state, When we ask for its sources,
    # Then they are exactly the states whose row contains the target
    table = TABLES[type(target)]
    expected = {state for state, exits in table.items() if target in exits}
    got = sources(target)
    assert got == expected
    assert all(type(state) is type(target) for state in got)
    # And advancing from each of them to the target succeeds
    for state in got:
        assert advance(state, target) is target


@pytest.mark.parametrize(
    ("initial", "retried_from"),
    [
        # (and a job of a paused task goes back to defined until the resume)
        (JobStatus.DEFINED, {JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.ACTIVATED}),
        # (and a pending task, once a queue fits it, is registered: then it is split)
        (TaskStatus.REGISTERED, {TaskStatus.CANCELLED, TaskStatus.ABORTED, TaskStatus.PENDING}),
        (PilotStatus.SUBMITTED, set()),
        (WorkflowStatus.REGISTERED, set()),
    ],
)
def test_initial_states_are_reached_again_only_by_a_retry_or_a_pause(
    initial: StrEnum, retried_from: set[StrEnum]
) -> None:
    # Objects are created in their initial state; only a user's retry (or a pause, for jobs)
    # moves back into it
    assert sources(initial) == retried_from


# --- property: random walks ------------------------------------------------------------------

MAX_WALK = 60


@settings(max_examples=150)
@given(machine=st.sampled_from(list(TABLES)), data=st.data())
def test_any_walk_over_allowed_transitions_never_raises(
    machine: type[StrEnum], data: st.DataObject
) -> None:
    # Given any start state of a machine
    table = TABLES[machine]
    state = data.draw(st.sampled_from(list(machine)), label="start")
    steps = 0

    # When we keep taking allowed transitions, chosen at random
    while table[state] and steps < MAX_WALK:
        target = data.draw(st.sampled_from(sorted(table[state])), label="next")
        # Then each step succeeds and lands on the chosen state
        assert advance(state, target) is target
        state = target
        steps += 1

    if not table[state]:
        # Then a terminal state stops the walk: no target at all is accepted from it
        target = data.draw(st.sampled_from(list(machine)), label="after end")
        with pytest.raises(IllegalTransition):
            advance(state, target)

    if machine is PilotStatus:
        # And pilots have no cycles (jobs, tasks and workflows have retries): every walk ends
        # within one step per state
        assert not table[state]
        assert steps < len(machine)
