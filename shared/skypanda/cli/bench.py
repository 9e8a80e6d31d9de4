"""`skypanda bench ...`: measured figures, printed as text or one JSON object (snake_case keys
that carry their unit)."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable

import click

from skypanda.cli.lazy import LazyGroup


def _rss_mb(who: int) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)  # Linux reports KiB


def wait_for_condition(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise click.ClickException(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@click.group(
    cls=LazyGroup,
    lazy={
        "cost": "skypanda.cli.bench_cloud:cost",
        "dispatch": "skypanda.cli.bench_cloud:dispatch",
        "monitor": "skypanda.cli.bench_monitor:monitor",
        "throughput": "skypanda.cli.bench_throughput:throughput",
    },
)
def bench() -> None:
    """Benchmarks: measured figures for BENCHMARKS.md."""
