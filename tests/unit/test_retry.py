"""Retry rules: pure decisions over a failed attempt's code, exit code and diagnosis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skypanda.domain.models import Resources, RetryRule
from skypanda.domain.retry import Limits, RetryDecision, decide, raise_for_task
from skypanda.wire.codes import ErrorCode

R = Resources(memory_mb=1000, cores=1, walltime=600)
LIMITS = Limits(memory_mb=4000, walltime_s=3600)


def _decide(
    rules: list[RetryRule],
    code: int | None,
    exit_code: int | None = 1,
    diag: str = "",
    failures: int = 0,
    resources: Resources = R,
    limits: Limits = LIMITS,
) -> RetryDecision:
    return decide(
        rules, error_code=code, exit_code=exit_code, diag=diag, failures=failures,
        resources=resources, limits=limits,
    )  # fmt: skip


def test_out_of_memory_is_retried_with_more_memory_by_default() -> None:
    d = _decide([], ErrorCode.OUT_OF_MEMORY)
    assert d.retry and d.resources.memory_mb == 1500
    assert d.reason == "default rule: memory 1000 -> 1500 MB"


def test_memory_grows_stepwise_up_to_the_queues_maximum_then_stops() -> None:
    # Given a job at 3000 MB on a queue offering 4000 MB
    d = _decide([], ErrorCode.OUT_OF_MEMORY, resources=R.model_copy(update={"memory_mb": 3000}))
    # Then the next attempt asks for the maximum, not more
    assert d.retry and d.resources.memory_mb == 4000
    # And once at the maximum, another out-of-memory is not retried
    d = _decide([], ErrorCode.OUT_OF_MEMORY, resources=d.resources)
    assert not d.retry and "already at the queue's maximum (4000 MB)" in d.reason


def test_walltime_exceeded_is_retried_with_more_time_within_the_queues_limit() -> None:
    d = _decide([], ErrorCode.MAX_TIME_EXCEEDED)
    assert d.retry and d.resources.walltime_s == 900
    top = _decide(
        [], ErrorCode.MAX_TIME_EXCEEDED, resources=R.model_copy(update={"walltime_s": 3000})
    )
    assert top.resources.walltime_s == 3600


@pytest.mark.parametrize(
    ("rule", "code", "exit_code", "diag", "retry"),
    [
        (RetryRule(exit_codes=[64], action="no_retry"), ErrorCode.PAYLOAD_FAILED, 64, "", False),
        (RetryRule(exit_codes=[64], action="no_retry"), ErrorCode.PAYLOAD_FAILED, 1, "", True),
        (
            RetryRule(pattern="bad config", action="no_retry"),
            9000,
            1,
            "x: bad config line 3",
            False,
        ),
        (RetryRule(pattern="^bad config", action="no_retry"), 9000, 1, "x: bad config", True),
        (RetryRule(codes=[9000], exit_codes=[2], action="no_retry"), 9000, 2, "", False),
        (RetryRule(codes=[9000], exit_codes=[2], action="no_retry"), 9000, 3, "", True),
        (RetryRule(codes=[1212], action="no_retry"), ErrorCode.OUT_OF_MEMORY, None, "", False),
    ],
)
def test_a_rule_matches_when_all_its_matchers_match(
    rule: RetryRule, code: int, exit_code: int | None, diag: str, retry: bool
) -> None:
    d = _decide([rule], code, exit_code, diag)
    assert d.retry is retry
    if not retry:
        assert d.reason == "retry rule 1: no retry"


def test_the_first_matching_rule_wins_and_task_rules_come_before_the_defaults() -> None:
    rules = [
        RetryRule(exit_codes=[3], action="retry"),
        RetryRule(exit_codes=[3], action="no_retry"),
    ]
    assert _decide(rules, 9000, 3).reason == "retry rule 1: retry"
    # A task rule on out-of-memory overrides the default memory increase
    custom = [RetryRule(codes=[1212], action="increase_memory", factor=2.0)]
    assert _decide(custom, ErrorCode.OUT_OF_MEMORY).resources.memory_mb == 2000


def test_limited_retry_stops_after_max_retries() -> None:
    rule = RetryRule(exit_codes=[5], action="retry", max_retries=2)
    assert _decide([rule], 9000, 5, failures=1).retry
    stop = _decide([rule], 9000, 5, failures=2)
    assert not stop.retry and stop.reason == "retry rule 1: at most 2 retries"


def test_no_matching_rule_leaves_the_attempt_to_max_attempts() -> None:
    d = _decide([RetryRule(exit_codes=[9], action="no_retry")], 9000, 1)
    assert d.retry and d.resources == R and d.reason == ""


def test_a_rule_must_match_something_and_its_pattern_must_compile() -> None:
    with pytest.raises(ValueError, match="needs codes, exit_codes or a pattern"):
        RetryRule(action="retry")
    with pytest.raises(ValueError, match="bad pattern"):
        RetryRule(pattern="(", action="retry")
    with pytest.raises(ValueError):
        RetryRule(codes=[1], action="explode")


@given(
    memory=st.integers(1, 8000),
    limit=st.integers(1, 8000),
    factor=st.floats(1.01, 10),
)
def test_more_memory_never_exceeds_the_limit_and_never_shrinks(
    memory: int, limit: int, factor: float
) -> None:
    rule = RetryRule(codes=[1212], action="increase_memory", factor=factor)
    start = R.model_copy(update={"memory_mb": memory})
    d = _decide([rule], ErrorCode.OUT_OF_MEMORY, resources=start, limits=Limits(memory_mb=limit))
    if d.retry:
        assert memory < d.resources.memory_mb <= limit
    else:
        assert memory >= limit and d.resources == start


@pytest.mark.parametrize(
    ("raised", "n_jobs", "expected"),
    [(0, 10, False), (3, 10, False), (4, 10, True), (1, 1, True), (0, 0, False), (31, 100, True)],
)
def test_a_task_raises_its_remaining_jobs_memory_past_30_percent(
    raised: int, n_jobs: int, expected: bool
) -> None:
    assert raise_for_task(raised, n_jobs) is expected


def test_at_the_queues_maximum_the_decision_asks_for_another_queue() -> None:
    # Given a job already asking for all its queue offers
    top = R.model_copy(update={"memory_mb": 4000})
    d = _decide([], ErrorCode.OUT_OF_MEMORY, resources=top)
    # Then it is not retried here, but would be with more memory elsewhere
    assert not d.retry and d.resources == top
    assert d.rebroker is not None and d.rebroker.memory_mb == 6000
