"""Specification of a job's kill (`domain.job_kill`): a queued job is cancelled at once with
its end event, a job held by a pilot is flagged for its pilot to kill, and a job being killed
or ended is left as it is."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skypanda.domain import events as ev
from skypanda.domain.job_kill import (
    JobKill,
    KillResult,
    kill,
    may_be_a_job_id,
    not_found,
    not_yours,
    outcome,
    too_many,
)
from skypanda.domain.models import Job
from skypanda.domain.policy import after_failed_attempt
from skypanda.domain.states import JOB_FINAL, JOB_LIVE, JOB_QUEUED, JobStatus, allowed
from skypanda.wire.codes import ErrorCode

T0 = 1_700_000_000.0


def job(status: JobStatus, **fields: object) -> Job:
    held = status in JOB_LIVE
    base: dict[str, object] = {
        "id": "t1-00000000000a", "task_id": "t1", "index": 3, "status": status, "attempt": 2,
        "queue": "q", "owner": "alice", "command": ["true"], "created_at": T0,
        "updated_at": T0, "pilot_id": "p1" if held else None,
    }  # fmt: skip
    return Job.model_validate({**base, **fields})


@pytest.mark.parametrize("status", sorted(JOB_QUEUED))
def test_a_queued_job_is_cancelled_at_once_with_its_end_event(status: JobStatus) -> None:
    # Given a job no pilot holds, When it is killed
    before = job(status)
    change = kill(before, T0 + 5, "killed by alice")
    # Then it ends cancelled now, with the reason as its diagnosis, compare-and-set against
    # the job as read, and its job.ended event goes with it (its task and children follow)
    assert change is not None and change.before == before
    after = change.after
    assert (after.status, after.ended_at, after.updated_at) == (JobStatus.CANCELLED, T0 + 5, T0 + 5)
    assert after.error_diag == "killed by alice" and after.attempt == before.attempt
    assert change.attempt is None  # no attempt of it had started
    assert change.events == (ev.job_ended(before.id, 2, "t1", "cancelled"),)
    # And the user is told so
    said = outcome(before, change)
    assert (said.result, said.status) == (KillResult.KILLED, JobStatus.CANCELLED)
    assert said.message == f"job t1-00000000000a was {status}: cancelled"


@pytest.mark.parametrize("status", sorted(JOB_LIVE))
def test_a_job_held_by_a_pilot_is_flagged_for_its_pilot_to_kill(status: JobStatus) -> None:
    # Given a job a pilot holds, When it is killed
    before = job(status)
    change = kill(before, T0 + 5, "killed by alice")
    # Then it stays as it is, flagged (its pilot is told to kill it), with no event yet
    assert change is not None
    assert change.after == before.model_copy(update={"kill_requested": True, "updated_at": T0 + 5})
    assert change.events == () and change.attempt is None
    said = outcome(before, change)
    assert (said.result, said.status) == (KillResult.KILL_REQUESTED, status)
    assert "on pilot p1: its pilot is told to kill it" in said.message
    # And when its pilot reports the attempt failed (killed), it ends cancelled, not retried
    ended = after_failed_attempt(failures=0, max_attempts=3, error_code=ErrorCode.KILLED_BY_SERVER,
                                 kill_requested=change.after.kill_requested)  # fmt: skip
    assert ended.status is JobStatus.CANCELLED


@pytest.mark.parametrize("status", sorted(JOB_LIVE))
def test_a_job_being_killed_already_is_left_as_it_is(status: JobStatus) -> None:
    flagged = job(status, kill_requested=True)
    assert kill(flagged, T0 + 5, "again") is None
    said = outcome(flagged, None)
    assert (said.result, said.status) == (KillResult.BEING_KILLED, status)
    assert said.message == "job t1-00000000000a is being killed already (its pilot p1 is told to)"


@pytest.mark.parametrize("status", sorted(JOB_FINAL))
def test_an_ended_job_is_left_as_it_is(status: JobStatus) -> None:
    ended = job(status, ended_at=T0)
    assert kill(ended, T0 + 5, "too late") is None
    said = outcome(ended, None)
    assert (said.result, said.status) == (KillResult.ENDED, status)
    assert said.message == f"job t1-00000000000a has ended {status}: nothing to kill"


@given(st.sampled_from(list(JobStatus)), st.booleans())
def test_a_kill_follows_the_job_state_machine_and_a_second_kill_changes_nothing(
    status: JobStatus, flagged: bool
) -> None:
    # For any job, a kill's move is one the state machine allows, and killing the job as the
    # kill left it writes nothing more
    before = job(status, kill_requested=flagged and status in JOB_LIVE)
    change = kill(before, T0 + 1, "x")
    if change is None:
        return
    assert change.after.status == before.status or allowed(before.status, change.after.status)
    assert kill(change.after, T0 + 2, "x") is None


def test_refusals_name_the_job_and_the_owner() -> None:
    assert not_found("t9-x") == JobKill("t9-x", KillResult.NOT_FOUND, None, "no job with id 't9-x'")
    theirs = not_yours(job(JobStatus.RUNNING), "bob")
    assert (theirs.result, theirs.status) == (KillResult.NOT_YOURS, JobStatus.RUNNING)
    assert theirs.message == "job t1-00000000000a belongs to alice; bob cannot kill it"
    assert theirs.as_dict() == {"job_id": "t1-00000000000a", "result": "not_yours",
                                "status": "running", "message": theirs.message}  # fmt: skip
    assert "at most 1,000 jobs can be killed in one request, not 1,001" in too_many(1001)


@pytest.mark.parametrize(
    ("text", "ok"),
    [("t0123456789ab-0123456789ab", True), ("t1-000000000001", True), ("a/b", False),
     ("", False), ("..", False), ("__name__", False), ("x" * 200, True), ("x" * 201, False),
     ("job id", False)],
)  # fmt: skip
def test_only_texts_that_can_be_job_ids_are_looked_up(text: str, ok: bool) -> None:
    assert may_be_a_job_id(text) is ok
