"""`skypanda bench ...`: measured figures, printed as text or one JSON object (snake_case keys
that carry their unit)."""

from __future__ import annotations

import json
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from skypanda.cli.lazy import LazyGroup
from skypanda.domain.models import Queue, TaskSpec
from skypanda.domain.states import PilotStatus, TaskStatus
from skypanda.handlers.submit import submit
from skypanda.runtime.local import LocalOptions, LocalSystem


def _rss_mb(who: int) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)  # Linux reports KiB


def wait_for_condition(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise click.ClickException(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def run_throughput(jobs: int, pilots: int, per_acquire: int, home: Path) -> dict[str, Any]:
    queue = Queue(
        name="bench", min_pilots=pilots, max_pilots=pilots, jobs_per_acquire=per_acquire,
        idle_timeout_s=60.0, heartbeat_interval_s=5.0, heartbeat_timeout_s=60.0,
    )  # fmt: skip
    with LocalSystem(LocalOptions(home=home, queue=queue, tick_s=0.5)) as system:
        store = system.store

        def running() -> bool:
            live = store.list_pilots(queue="bench")
            return sum(p.status is PilotStatus.RUNNING for p in live) >= pilots

        wait_for_condition(running, 60, f"{pilots} pilots to register")
        spec = TaskSpec(name="bench", command=["true"], n_jobs=jobs, queue="bench", max_attempts=1)
        start = time.perf_counter()
        task = submit(system.svc, spec, owner="bench")
        ended = {TaskStatus.DONE, TaskStatus.FAILED}
        wait_for_condition(
            lambda: store.get_task(task.id).status in ended,
            3600,
            "the task",
        )
        seconds = time.perf_counter() - start
        final = store.get_task(task.id)
    return {
        "jobs": jobs,
        "pilots": pilots,
        "jobs_per_acquire": per_acquire,
        "status": str(final.status),
        "seconds": round(seconds, 3),
        "jobs_per_s": round(jobs / seconds, 1),
        "peak_rss_mb": _rss_mb(resource.RUSAGE_SELF),
        "pilot_peak_rss_mb": _rss_mb(resource.RUSAGE_CHILDREN),
    }


@click.group(
    cls=LazyGroup,
    lazy={"cost": "skypanda.cli.bench_cloud:cost", "dispatch": "skypanda.cli.bench_cloud:dispatch"},
)
def bench() -> None:
    """Benchmarks: measured figures for BENCHMARKS.md."""


@bench.command()
@click.option("--jobs", default=2000, show_default=True, help="Trivial jobs (`true`) to run.")
@click.option("--pilots", default=2, show_default=True, help="Local pilots.")
@click.option(
    "--per-acquire", default=64, show_default=True, help="Jobs a pilot takes per acquire."
)
@click.option("--json", "as_json", is_flag=True)
def throughput(jobs: int, pilots: int, per_acquire: int, as_json: bool) -> None:
    """N trivial jobs through the whole local path: submit, split, dispatch, run, release."""
    with tempfile.TemporaryDirectory(prefix="skypanda-bench-") as tmp:
        result = run_throughput(jobs, pilots, per_acquire, Path(tmp))
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key, value in result.items():
            click.echo(f"{key:<20} {value}")
