"""`skypanda bench dag`: how fast the engine stores and releases a big workflow.

Embedded backend (SQLite in a temporary directory), simulated pilots (bulk acquire and report
through the real dispatch handlers, no subprocess), events delivered synchronously between
rounds. Figures: submit_s (validate + store the workflow + make every eager task's jobs and
edges), release_jobs_per_s (jobs / seconds from the first acquire to the workflow's end: claims,
reports, edge marking, child activation, rollups, planner), peak_rss_mb (this process).
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from skypanda.adapters.clock import SystemClock
from skypanda.adapters.local.bus import OutboxBus
from skypanda.adapters.local.files import FileBlobs
from skypanda.adapters.local.sqlite import SqliteStore
from skypanda.domain.models import Queue, Resources
from skypanda.domain.states import WORKFLOW_FINAL
from skypanda.formats.shapes import SHAPES, make
from skypanda.handlers import workflow
from skypanda.handlers.pipeline import Pipeline
from skypanda.handlers.services import Services
from skypanda.runtime.router import Router
from skypanda.runtime.sim import SimulatedPilots


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_dag(
    shape: str, jobs: int, pilots: int, batch: int, home: Path, release: bool
) -> dict[str, Any]:
    clock = SystemClock()
    store = SqliteStore(home / "bench.db", clock=clock.now)
    store.put_queue(Queue(name="bench", pilot_resources=Resources(memory_mb=8000, cores=8)))
    svc = Services(store=store, bus=OutboxBus(store), blobs=FileBlobs(home / "blobs"), clock=clock)
    router = Router(Pipeline(svc), store, batch=2000)
    try:
        spec, graph = make(shape, jobs, queue="bench")
        t0 = time.perf_counter()
        wf = workflow.submit_workflow(svc, spec, "bench", graph)
        router.drain()  # workflow.registered -> start: every eager task's jobs and edges
        submit_s = time.perf_counter() - t0
        n_jobs = sum(t.n_jobs for t in store.workflow_tasks(wf.id))
        result: dict[str, Any] = {
            "shape": shape,
            "jobs": n_jobs,
            "tasks": len(spec.tasks),
            "submit_s": round(submit_s, 2),
            "submit_rss_mb": _rss_mb(),
        }
        if release:
            sim = SimulatedPilots(svc, router, "bench", pilots=pilots, batch=batch)
            t1 = time.perf_counter()
            sim.run(lambda: store.get_workflow(wf.id).status in WORKFLOW_FINAL)
            release_s = time.perf_counter() - t1
            final = store.get_workflow(wf.id)
            result.update(
                status=str(final.status),
                release_s=round(release_s, 2),
                release_jobs_per_s=round(sim.stats.reported / release_s, 1),
                rounds=sim.stats.rounds,
            )
        result["peak_rss_mb"] = _rss_mb()
        return result
    finally:
        store.close()


@click.command("dag")
@click.option("--jobs", default=100_000, show_default=True, help="About how many jobs.")
@click.option("--shape", type=click.Choice(SHAPES), default="rubin", show_default=True)
@click.option("--pilots", default=4, show_default=True, help="Simulated pilots.")
@click.option("--batch", default=1000, show_default=True, help="Jobs per acquire and report.")
@click.option("--no-release", is_flag=True, help="Only submit (store the graph).")
@click.option("--json", "as_json", is_flag=True)
def dag(jobs: int, shape: str, pilots: int, batch: int, no_release: bool, as_json: bool) -> None:
    """A generated workflow stored and released on the embedded backend (simulated pilots)."""
    if not 1 <= batch <= 1000:
        raise click.BadParameter("must be between 1 and 1000", param_hint="--batch")
    with tempfile.TemporaryDirectory(prefix="skypanda-bench-dag-") as tmp:
        result = run_dag(shape, jobs, pilots, batch, Path(tmp), not no_release)
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key, value in result.items():
            click.echo(f"{key:<20} {value}")
