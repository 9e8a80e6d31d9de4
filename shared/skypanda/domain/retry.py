"""Retry rules (JEDI's): what a failed attempt's code and diagnosis say about the next one.

Pure. The task's own rules come first, then the defaults: an out-of-memory attempt is retried
with more memory, one past its walltime with more time, each step by `factor` and never above
what the job's queue offers. A job already at the queue's limit is not retried for that reason
(its next attempt would fail the same way) but may be moved to another queue that offers
more (`rebroker`, decided by the broker in `jobflow`). Preemption and the other uncounted
codes never reach these rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from skypanda.domain.models import Resources, RetryRule
from skypanda.domain.patterns import compile_user_pattern, subject
from skypanda.domain.values import MAX_DURATION_S
from skypanda.wire.codes import ErrorCode

DEFAULT_RULES: tuple[RetryRule, ...] = (
    RetryRule(codes=[ErrorCode.OUT_OF_MEMORY], action="increase_memory"),
    RetryRule(codes=[ErrorCode.MAX_TIME_EXCEEDED], action="increase_walltime"),
)


@dataclass(frozen=True)
class Limits:
    """The most a job of this queue may ask for."""

    memory_mb: int
    walltime_s: float | None = None


@dataclass(frozen=True)
class RetryDecision:
    """`retry`: whether a new attempt should run (still bounded by max_attempts);
    `resources`: what it asks for; `reason`: why, for the job's diagnosis."""

    retry: bool
    resources: Resources
    reason: str = ""
    rebroker: Resources | None = None  # no retry here, but on another queue offering this


def matches(rule: RetryRule, error_code: int | None, exit_code: int | None, diag: str) -> bool:
    """Whether every matcher of `rule` matches: its `pattern` is searched (RE2, linear time) in
    the first 16 KiB of `diag` (see `patterns`)."""
    if rule.codes and error_code not in rule.codes:
        return False
    if rule.exit_codes and exit_code not in rule.exit_codes:
        return False
    if rule.pattern is None:
        return True
    return compile_user_pattern(rule.pattern, "pattern").search(subject(diag)) is not None


def decide(
    rules: tuple[RetryRule, ...] | list[RetryRule],
    *,
    error_code: int | None,
    exit_code: int | None,
    diag: str,
    failures: int,
    resources: Resources,
    limits: Limits,
) -> RetryDecision:
    """The decision of the first rule (the task's, then DEFAULT_RULES) matching the attempt;
    with none matching, retry as before. `failures` counts the job's failed attempts so far
    (before this one)."""
    for n, rule in enumerate((*rules, *DEFAULT_RULES), start=1):
        if not matches(rule, error_code, exit_code, diag):
            continue
        name = f"retry rule {n}" if n <= len(rules) else "default rule"
        if rule.action == "no_retry":
            return RetryDecision(False, resources, f"{name}: no retry")
        if rule.max_retries is not None and failures >= rule.max_retries:
            return RetryDecision(False, resources, f"{name}: at most {rule.max_retries} retries")
        if rule.action == "increase_memory":
            return _more_memory(rule, resources, limits, name)
        if rule.action == "increase_walltime":
            return _more_time(rule, resources, limits, name)
        return RetryDecision(True, resources, f"{name}: retry")
    return RetryDecision(True, resources)


def _more_memory(rule: RetryRule, r: Resources, limits: Limits, name: str) -> RetryDecision:
    if r.memory_mb >= limits.memory_mb:
        wanted = r.model_copy(update={"memory_mb": math.ceil(r.memory_mb * rule.factor)})
        return RetryDecision(
            False,
            r,
            f"{name}: memory already at the queue's maximum ({limits.memory_mb} MB)",
            rebroker=wanted,
        )
    more = min(limits.memory_mb, math.ceil(r.memory_mb * rule.factor))
    return RetryDecision(
        True,
        r.model_copy(update={"memory_mb": more}),
        f"{name}: memory {r.memory_mb} -> {more} MB",
    )


def _more_time(rule: RetryRule, r: Resources, limits: Limits, name: str) -> RetryDecision:
    cap = limits.walltime_s if limits.walltime_s is not None else MAX_DURATION_S
    if r.walltime_s >= cap:
        return RetryDecision(False, r, f"{name}: walltime already at the queue's maximum")
    more = min(cap, r.walltime_s * rule.factor)
    return RetryDecision(
        True,
        r.model_copy(update={"walltime_s": more}),
        f"{name}: walltime {r.walltime_s:g} -> {more:g} s",
    )


TASK_RAISE_FRACTION = 0.3
"""When more than this fraction of a task's jobs needed more memory, its queued jobs get it
too (JEDI raises the task's request past 30 %): they would likely fail the same way."""


def raise_for_task(raised: int, n_jobs: int, fraction: float = TASK_RAISE_FRACTION) -> bool:
    """Whether a task whose `raised` jobs (of `n_jobs`) needed more memory should raise the
    request of its remaining jobs."""
    return n_jobs > 0 and raised / n_jobs > fraction
