"""Specification of the pure decisions: retries of failed attempts, task rollup, pilot scaling."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skypanda.domain.policy import (
    AttemptOutcome,
    after_failed_attempt,
    lost_attempt,
    rollup,
)
from skypanda.domain.states import JOB_FINAL, JobStatus, TaskStatus
from skypanda.wire.codes import NOT_COUNTED, ErrorCode

COUNTED_CODES = sorted(set(ErrorCode) - NOT_COUNTED)

# --- after_failed_attempt ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "max_attempts", "expected"),
    [
        (0, 3, AttemptOutcome(JobStatus.ACTIVATED, 1)),
        (1, 3, AttemptOutcome(JobStatus.ACTIVATED, 2)),
        (2, 3, AttemptOutcome(JobStatus.FAILED, 3)),
        (0, 1, AttemptOutcome(JobStatus.FAILED, 1)),
        (0, 2, AttemptOutcome(JobStatus.ACTIVATED, 1)),
        (98, 100, AttemptOutcome(JobStatus.ACTIVATED, 99)),
        (99, 100, AttemptOutcome(JobStatus.FAILED, 100)),
    ],
)
def test_a_failed_attempt_is_retried_until_max_attempts_failures(
    failures: int, max_attempts: int, expected: AttemptOutcome
) -> None:
    # Given a job that has already failed `failures` times, When another attempt fails,
    # Then it gets a new attempt unless this failure is its max_attempts-th
    outcome = after_failed_attempt(
        failures=failures,
        max_attempts=max_attempts,
        error_code=ErrorCode.PAYLOAD_FAILED,
        kill_requested=False,
    )
    assert outcome == expected


@pytest.mark.parametrize("code", [*COUNTED_CODES, None], ids=str)
def test_every_other_failure_counts(code: int | None) -> None:
    # Given a job on its last attempt, When it fails with a counted code (or none at all)
    outcome = after_failed_attempt(
        failures=2, max_attempts=3, error_code=code, kill_requested=False
    )
    # Then it fails for good
    assert outcome == AttemptOutcome(JobStatus.FAILED, 3)


@pytest.mark.parametrize(
    "code",
    [ErrorCode.SIGTERM, ErrorCode.PREEMPTED, int(ErrorCode.SIGTERM), int(ErrorCode.PREEMPTED)],
    ids=["SIGTERM", "PREEMPTED", "1201-as-int", "1379-as-int"],
)
@pytest.mark.parametrize("failures", [0, 2])
def test_sigterm_and_preemption_never_count(code: int, failures: int) -> None:
    # Given a job, even one on its last attempt (codes may arrive as plain ints from a report)
    # When its attempt ends because the pilot was terminated or the node preempted
    outcome = after_failed_attempt(
        failures=failures, max_attempts=3, error_code=code, kill_requested=False
    )
    # Then it is requeued and the failure count does not move
    assert outcome == AttemptOutcome(JobStatus.ACTIVATED, failures)


@pytest.mark.parametrize("code", [ErrorCode.PAYLOAD_FAILED, ErrorCode.PREEMPTED, None], ids=str)
@pytest.mark.parametrize("failures", [0, 2])
def test_a_job_whose_kill_was_requested_is_cancelled_not_retried(
    code: int | None, failures: int
) -> None:
    outcome = after_failed_attempt(
        failures=failures, max_attempts=3, error_code=code, kill_requested=True
    )
    assert outcome == AttemptOutcome(JobStatus.CANCELLED, failures)


def test_a_lost_attempt_counts_as_a_failure() -> None:
    # Given a job whose pilot stopped heartbeating, Then that attempt counts against max_attempts
    assert lost_attempt(failures=0, max_attempts=3) == AttemptOutcome(JobStatus.ACTIVATED, 1)
    assert lost_attempt(failures=1, max_attempts=3) == AttemptOutcome(JobStatus.ACTIVATED, 2)
    assert lost_attempt(failures=2, max_attempts=3) == AttemptOutcome(JobStatus.FAILED, 3)
    assert lost_attempt(failures=0, max_attempts=1) == AttemptOutcome(JobStatus.FAILED, 1)


failure_codes = st.one_of(
    st.none(),
    st.sampled_from(list(ErrorCode)),
    st.integers(min_value=1, max_value=10_000),  # payload or unknown codes
)


@settings(max_examples=200)
@given(
    max_attempts=st.integers(min_value=1, max_value=8),
    codes=st.lists(failure_codes, max_size=40),
)
def test_a_job_fails_for_good_exactly_at_its_max_attempts_th_counted_failure(
    max_attempts: int, codes: list[int | None]
) -> None:
    # Given a fresh job, When its attempts fail one after another with these codes
    failures = 0
    counted_seen = 0
    for code in codes:
        outcome = after_failed_attempt(
            failures=failures, max_attempts=max_attempts, error_code=code, kill_requested=False
        )
        counts = code is None or code not in NOT_COUNTED
        counted_seen += counts
        # Then each step adds one failure if the code counts, none otherwise
        assert outcome.failures == failures + counts
        assert outcome.failures <= max_attempts
        if outcome.status is JobStatus.FAILED:
            # And the job gives up exactly at its max_attempts-th counted failure
            assert counted_seen == max_attempts
            assert outcome.failures == max_attempts
            break
        # And otherwise it is retried as a new attempt
        assert outcome.status is JobStatus.ACTIVATED
        failures = outcome.failures
    else:
        # And a job that is never given up on has seen fewer than max_attempts counted failures
        assert counted_seen < max_attempts


# --- rollup ------------------------------------------------------------------------------------

F, X, C, L = JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.CLOSED


@pytest.mark.parametrize("waiting", sorted(set(JobStatus) - JOB_FINAL))
@pytest.mark.parametrize("allow_partial", [False, True])
def test_no_rollup_while_any_job_has_not_ended(waiting: JobStatus, allow_partial: bool) -> None:
    # Given a task with one job not yet ended, even with failures already
    counts = {F: 5, X: 2, waiting: 1}
    # Then the task has no final state yet
    assert rollup(counts, allow_partial=allow_partial) is None


@pytest.mark.parametrize(
    ("counts", "allow_partial", "expected"),
    [
        # every job finished
        ({F: 3}, False, TaskStatus.DONE),
        ({F: 3}, True, TaskStatus.DONE),
        # zero counts are ignored
        ({F: 3, JobStatus.RUNNING: 0, X: 0}, False, TaskStatus.DONE),
        # a failure fails the task...
        ({F: 3, X: 1}, False, TaskStatus.FAILED),
        ({F: 3, C: 1}, False, TaskStatus.FAILED),
        # ...unless partial success is allowed and some job finished
        ({F: 3, X: 1}, True, TaskStatus.FINISHED),
        ({F: 1, C: 4}, True, TaskStatus.FINISHED),
        ({F: 1, X: 2, C: 2}, True, TaskStatus.FINISHED),
        # nothing finished: failed, even with allow_partial
        ({X: 3}, False, TaskStatus.FAILED),
        ({X: 3}, True, TaskStatus.FAILED),
        ({C: 3}, False, TaskStatus.FAILED),
        ({C: 3}, True, TaskStatus.FAILED),
        ({X: 1, C: 2}, True, TaskStatus.FAILED),
    ],
)
def test_rollup_of_ended_jobs(
    counts: dict[JobStatus, int], allow_partial: bool, expected: TaskStatus
) -> None:
    assert rollup(counts, allow_partial=allow_partial) is expected


def test_a_task_finished_early_is_finished_not_done() -> None:
    # Given a task a user finished: some jobs ran and finished, the rest were closed unrun
    # Then it is finished (it did not do all its work), with or without allow_partial
    assert rollup({F: 3, L: 2}, allow_partial=False) is TaskStatus.FINISHED
    assert rollup({L: 2}, allow_partial=False) is TaskStatus.FINISHED


@pytest.mark.parametrize(
    "counts", [{X: 1, L: 3}, {C: 2, L: 1}], ids=["failed+closed", "cancelled+closed"]
)
def test_closed_jobs_are_not_a_partial_success(counts: dict[JobStatus, int]) -> None:
    # Given a task where jobs failed and the rest were closed without ever running
    # When it rolls up with allow_partial, Then it failed: no job succeeded
    assert rollup(counts, allow_partial=True) is TaskStatus.FAILED


job_counts = st.dictionaries(
    st.sampled_from(list(JobStatus)), st.integers(min_value=0, max_value=5), max_size=len(JobStatus)
)


@settings(max_examples=200)
@given(counts=job_counts, allow_partial=st.booleans())
def test_rollup_properties(counts: dict[JobStatus, int], allow_partial: bool) -> None:
    result = rollup(counts, allow_partial=allow_partial)
    live = sum(n for status, n in counts.items() if status not in JOB_FINAL)
    bad = counts.get(X, 0) + counts.get(C, 0)
    if live:
        # A task with a job still queued or running has no final state
        assert result is None
        return
    assert result in {TaskStatus.DONE, TaskStatus.FINISHED, TaskStatus.FAILED}
    closed = counts.get(L, 0)
    # DONE exactly when no job failed, was cancelled or was closed unrun
    assert (result is TaskStatus.DONE) == (bad == 0 and closed == 0)
    # FINISHED: finished early (closed jobs, nothing bad), or a partial success the task allows
    if result is TaskStatus.FINISHED:
        assert (bad == 0 and closed > 0) or (allow_partial and bad > 0 and counts.get(F, 0) > 0)
    # Without allow_partial a failure always fails the task
    if not allow_partial and bad:
        assert result is TaskStatus.FAILED
