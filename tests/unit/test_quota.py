"""How much one owner may have unended at once (`domain.quota`): the decision and its message,
and the deployment's limits read from the environment."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skypanda.domain.errors import InvalidInput, QuotaExceeded
from skypanda.domain.quota import (
    JOBS_ENV,
    MAX_ACTIVE_JOBS,
    MAX_ACTIVE_TASKS,
    TASKS_ENV,
    Quota,
    Usage,
)


def test_a_submission_within_both_limits_passes() -> None:
    Quota(max_tasks=3, max_jobs=100).check("alice", Usage(tasks=2, jobs=60), 1, 40)


def test_a_submission_past_the_jobs_limit_is_refused_naming_what_and_how_much() -> None:
    with pytest.raises(QuotaExceeded) as refused:
        Quota(max_tasks=10, max_jobs=100).check("alice", Usage(tasks=2, jobs=60), 1, 41)
    e = refused.value
    assert e.http_status == 429 and e.retryable
    assert "alice may have at most 100 unended jobs: 60 are under way and this would add 41" in (
        e.message
    )
    assert e.context == {"owner": "alice", "limit": 100, "unended": 60, "adding": 41, "of": "jobs"}


def test_a_submission_past_the_tasks_limit_is_refused() -> None:
    with pytest.raises(QuotaExceeded, match="at most 5,000 unended tasks: 5,000 are under way"):
        Quota().check("bob", Usage(tasks=MAX_ACTIVE_TASKS, jobs=0), 1, 1)


def test_no_limit_refuses_nothing() -> None:
    free = Quota(max_tasks=None, max_jobs=None)
    assert not free.limited
    free.check("alice", Usage(tasks=10**9, jobs=10**12), 10**6, 10**9)


@given(
    limit=st.integers(0, 10**7),
    has=st.integers(0, 10**7),
    adds=st.integers(0, 10**7),
)
def test_refused_exactly_when_the_total_passes_the_limit(limit: int, has: int, adds: int) -> None:
    quota = Quota(max_tasks=None, max_jobs=limit)
    try:
        quota.check("o", Usage(tasks=0, jobs=has), 0, adds)
        refused = False
    except QuotaExceeded:
        refused = True
    assert refused == (has + adds > limit)


def test_the_limits_come_from_the_environment() -> None:
    assert Quota.from_env({}) == Quota(MAX_ACTIVE_TASKS, MAX_ACTIVE_JOBS)
    assert Quota.from_env({TASKS_ENV: " 20 ", JOBS_ENV: "1_000"}) == Quota(20, 1000)
    assert Quota.from_env({TASKS_ENV: "0", JOBS_ENV: ""}) == Quota(None, MAX_ACTIVE_JOBS)


@pytest.mark.parametrize("bad", ["-1", "ten", "1.5", "1e3", "10000000000000", "nan"])
def test_a_bad_limit_is_refused_naming_the_variable(bad: str) -> None:
    with pytest.raises(InvalidInput, match=f"{JOBS_ENV} must be a whole number from 0"):
        Quota.from_env({JOBS_ENV: bad})
