"""`skypanda bench throughput`: trivial jobs through the whole embedded path, by shape.

    bag     N independent jobs (one task)
    chain   N jobs, each waiting for the one before (one graph task): the critical path
    fanin   N independent jobs, then one job waiting for all of them (two graph tasks)

Every run measures, in the same process and one after the other on the same machine:

- `spawn_floor_per_s`: `true` started and waited for in a loop (`subprocess.run`, what a pilot
  does for a payload) by as many threads as the run has payload slots: the most jobs/s this
  machine could run with no scheduler at all. `floor_ratio` is the run's jobs/s over it (the
  machine is shared and noisy: compare ratios, not raw figures, across runs);
- `submit_to_running_ms_p50` (and p90, max): a one-job task submitted `tries` times to warm,
  idle pilots (each try after a pause of `IDLE_BEFORE_TRY_S`, so idle pilots are in their
  steady waiting state); from just before `submit` to the job's stored `started_at` (when a
  pilot took it);
- the shape's run: jobs/s from submit to the end of the workflow (the task, for a bag), and,
  for chain and fanin, the dependency latency from the stored times: a child's `started_at`
  (taken by a pilot) minus the latest `ended_at` of its parents (the server received the final
  report). `link_ms` (chain): wall time per job of the chain, every part of a link included;
- CPU per job, which a busy machine disturbs less than wall time: `server_cpu_ms_per_job`
  (this process, which is the server, during the shape's run, less what the benchmark's own
  thread spent polling for the end: on a busy machine a slow run polls more, and each poll
  reads the workflow), `pilots_cpu_ms_per_job` (the
  pilots and their payloads, over their whole life) and `floor_cpu_ms_per_spawn` (one run of
  the floor's loop, parent and child);
- context switches per job, which count hand-overs between threads and waits whatever the
  load: `pilots_switches_per_job` (the pilots and their payloads, over their whole life) and
  `floor_switches_per_spawn` (one run of the floor's loop, parent and child).
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from skypanda.cli.bench import _rss_mb, wait_for_condition
from skypanda.domain.models import Job, Queue, Resources, TaskSpec
from skypanda.domain.states import WORKFLOW_FINAL, PilotStatus, TaskStatus
from skypanda.domain.workflow import WorkflowSpec
from skypanda.handlers import workflow
from skypanda.handlers.submit import submit
from skypanda.runtime.local import LocalOptions, LocalSystem

SHAPES = ("bag", "chain", "fanin")
IDLE_BEFORE_TRY_S = 1.0
TASK_ENDS = frozenset({TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.FINISHED})


def _cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _switches(who: int) -> int:
    """Context switches, voluntary or not: a thread hand-over, a wait, a preemption."""
    usage = resource.getrusage(who)
    return usage.ru_nvcsw + usage.ru_nivcsw


def spawn_floor(parallel: int, total: int) -> tuple[float, float, float]:
    """Jobs/s of `subprocess.run(["true"])` in `parallel` threads, `total` runs in all, the
    CPU seconds one run cost (this process and the child) and its context switches."""
    each = max(1, total // parallel)

    def loop() -> None:
        for _ in range(each):
            subprocess.run(["true"], check=True)

    threads = [threading.Thread(target=loop) for _ in range(parallel)]
    cpu = _cpu_s(resource.RUSAGE_SELF) + _cpu_s(resource.RUSAGE_CHILDREN)
    switches = _switches(resource.RUSAGE_SELF) + _switches(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    cpu = _cpu_s(resource.RUSAGE_SELF) + _cpu_s(resource.RUSAGE_CHILDREN) - cpu
    switches = _switches(resource.RUSAGE_SELF) + _switches(resource.RUSAGE_CHILDREN) - switches
    runs = each * parallel
    return runs / seconds, cpu / runs, switches / runs


def _graph(shape: str, jobs: int) -> tuple[WorkflowSpec, list[bytes]]:
    """A chain (one graph task) or a fan-in (two) of `jobs` jobs, as a workflow spec and its
    job graph's lines."""
    task = {"command": ["true"], "queue": "bench", "max_attempts": 1, "graph": True}
    nodes: list[dict[str, Any]] = []
    if shape == "chain":
        names = ["link"]
        for j in range(jobs):
            parents = [f"j{j - 1}"] if j else []
            nodes.append({"id": f"j{j}", "task": "link", "inputs": [f"i{j}"], "parents": parents})
    else:
        names = ["wide", "final"]
        wide = [f"w{j}" for j in range(jobs - 1)]
        nodes = [{"id": w, "task": "wide", "inputs": [w], "parents": []} for w in wide]
        nodes.append({"id": "final", "task": "final", "inputs": ["f"], "parents": wide})
    spec = WorkflowSpec.model_validate(
        {"name": f"bench-{shape}", "graph": "generated",
         "tasks": [{"name": n, **task} for n in names]}
    )  # fmt: skip
    return spec, [(json.dumps(n) + "\n").encode() for n in nodes]


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def dependency_latencies(jobs: list[Job]) -> list[float]:
    """For each job with parents: its `started_at` minus the latest `ended_at` of its parents."""
    by_id = {j.id: j for j in jobs}
    out: list[float] = []
    for job in jobs:
        ends = [by_id[p].ended_at for p in job.parents if p in by_id]
        if job.parents and job.started_at is not None and ends and None not in ends:
            out.append(job.started_at - max(e for e in ends if e is not None))
    return out


def _warm_latencies(system: LocalSystem, tries: int) -> list[float]:
    store = system.store
    out: list[float] = []
    for k in range(tries):
        time.sleep(IDLE_BEFORE_TRY_S)  # idle pilots settle in their waiting state
        spec = TaskSpec(name=f"warm{k}", command=["true"], n_jobs=1, queue="bench",
                        max_attempts=1)  # fmt: skip
        t0 = system.svc.clock.now()
        task = submit(system.svc, spec, owner="bench")
        ended = lambda t=task.id: store.get_task(t).status in TASK_ENDS  # noqa: E731
        wait_for_condition(ended, 60, "a warm try")
        (job,) = store.list_jobs(task.id)
        if job.started_at is not None:
            out.append(job.started_at - t0)
    return out


def _all_jobs(system: LocalSystem, task_ids: list[str]) -> Iterator[Job]:
    for task_id in task_ids:
        yield from system.store.list_jobs(task_id, limit=1_000_000)


def _polled(predicate: Callable[[], bool], what: str) -> float:
    """Wait for `predicate`; the CPU seconds this thread spent polling."""
    cpu = time.thread_time()
    wait_for_condition(predicate, 3600, what)
    return time.thread_time() - cpu


def _run_shape(system: LocalSystem, shape: str, jobs: int) -> tuple[float, float, str, list[Job]]:
    """Submit the shape, wait for its end: (seconds, CPU seconds spent polling for the end,
    final status, its jobs)."""
    store = system.store
    if shape == "bag":
        spec = TaskSpec(name="bag", command=["true"], n_jobs=jobs, queue="bench", max_attempts=1)
        start = time.perf_counter()
        task = submit(system.svc, spec, owner="bench")
        polled = _polled(lambda: store.get_task(task.id).status in TASK_ENDS, "the bag")
        seconds = time.perf_counter() - start
        status = str(store.get_task(task.id).status)
        return seconds, polled, status, list(_all_jobs(system, [task.id]))
    wf_spec, lines = _graph(shape, jobs)
    start = time.perf_counter()
    wf = workflow.submit_workflow(system.svc, wf_spec, "bench", iter(lines))
    polled = _polled(lambda: store.get_workflow(wf.id).status in WORKFLOW_FINAL, f"the {shape}")
    seconds = time.perf_counter() - start
    ids = [t.id for t in store.workflow_tasks(wf.id)]
    return seconds, polled, str(store.get_workflow(wf.id).status), list(_all_jobs(system, ids))


def run_throughput(
    shape: str,
    jobs: int,
    pilots: int,
    per_acquire: int,
    tries: int,
    home: Path,
    slots_per_pilot: int = 1,
) -> dict[str, Any]:
    """One run: the spawn floor, the warm submit latency, then the shape (module docstring)."""
    queue = Queue(
        name="bench", min_pilots=pilots, max_pilots=pilots, jobs_per_acquire=per_acquire,
        idle_timeout_s=600.0, heartbeat_interval_s=5.0, heartbeat_timeout_s=60.0,
        pilot_resources=Resources(memory_mb=4000, cores=slots_per_pilot),
    )  # fmt: skip
    slots = pilots * queue.pilot_resources.cores  # a local pilot runs one payload per core
    floor, floor_cpu, floor_switches = spawn_floor(slots, min(max(jobs, 500), 4000))
    children_cpu = _cpu_s(resource.RUSAGE_CHILDREN)
    children_switches = _switches(resource.RUSAGE_CHILDREN)
    with LocalSystem(LocalOptions(home=home, queue=queue, tick_s=0.5)) as system:

        def registered() -> bool:
            live = system.store.list_pilots(queue="bench")
            return sum(p.status is PilotStatus.RUNNING for p in live) >= pilots

        wait_for_condition(registered, 60, f"{pilots} pilots to register")
        warm = _warm_latencies(system, tries)
        server_cpu = _cpu_s(resource.RUSAGE_SELF)
        seconds, polled, status, done = _run_shape(system, shape, jobs)
        server_cpu = _cpu_s(resource.RUSAGE_SELF) - server_cpu - polled
    children_cpu = _cpu_s(resource.RUSAGE_CHILDREN) - children_cpu  # pilots and payloads
    children_switches = _switches(resource.RUSAGE_CHILDREN) - children_switches
    deps = dependency_latencies(done)
    jobs_per_s = len(done) / seconds
    result: dict[str, Any] = {
        "shape": shape,
        "jobs": len(done),
        "pilots": pilots,
        "slots": slots,
        "jobs_per_acquire": per_acquire,
        "status": status,
        "seconds": round(seconds, 3),
        "jobs_per_s": round(jobs_per_s, 1),
        "spawn_floor_per_s": round(floor, 1),
        "floor_ratio": round(jobs_per_s / floor, 3),
        "floor_cpu_ms_per_spawn": round(floor_cpu * 1000, 3),
        "server_cpu_ms_per_job": round(server_cpu * 1000 / len(done), 3),
        "pilots_cpu_ms_per_job": round(children_cpu * 1000 / len(done), 3),
        "floor_switches_per_spawn": round(floor_switches, 2),
        "pilots_switches_per_job": round(children_switches / len(done), 2),
        "submit_to_running_ms_p50": _ms(statistics.median(warm) if warm else None),
        "submit_to_running_ms_p90": _ms(_percentile(warm, 0.9)),
        "submit_to_running_ms_max": _ms(max(warm) if warm else None),
    }
    if deps:
        result.update(
            dependency_ms_p50=_ms(statistics.median(deps)),
            dependency_ms_p99=_ms(_percentile(deps, 0.99)),
            dependency_ms_max=_ms(max(deps)),
        )
    if shape == "chain":
        result["link_ms"] = round(seconds * 1000 / max(1, len(done)), 2)
    result["peak_rss_mb"] = _rss_mb(resource.RUSAGE_SELF)
    result["pilot_peak_rss_mb"] = _rss_mb(resource.RUSAGE_CHILDREN)
    return result


@click.command("throughput")
@click.option("--shape", type=click.Choice(SHAPES), default="bag", show_default=True)
@click.option("--jobs", default=2000, show_default=True, help="Trivial jobs (`true`) to run.")
@click.option("--pilots", default=2, show_default=True, help="Local pilots.")
@click.option("--slots", default=1, show_default=True, help="Payload slots (cores) of each pilot.")
@click.option(
    "--per-acquire", default=64, show_default=True, help="Jobs a pilot takes per acquire."
)
@click.option("--tries", default=20, show_default=True, help="Warm submit -> running tries.")
@click.option("--json", "as_json", is_flag=True)
def throughput(
    shape: str, jobs: int, pilots: int, slots: int, per_acquire: int, tries: int, as_json: bool
) -> None:
    """N trivial jobs through the whole local path: submit, split, dispatch, run, release."""
    if jobs < 2:
        raise click.BadParameter("at least 2 jobs", param_hint="--jobs")
    if not 1 <= pilots <= 64:
        raise click.BadParameter("between 1 and 64", param_hint="--pilots")
    if not 1 <= slots <= 64:
        raise click.BadParameter("between 1 and 64", param_hint="--slots")
    if not 1 <= per_acquire <= 1000:
        raise click.BadParameter("between 1 and 1000", param_hint="--per-acquire")
    if not 0 <= tries <= 1000:
        raise click.BadParameter("between 0 and 1000", param_hint="--tries")
    with tempfile.TemporaryDirectory(prefix="skypanda-bench-") as tmp:
        result = run_throughput(shape, jobs, pilots, per_acquire, tries, Path(tmp), slots)
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key, value in result.items():
            click.echo(f"{key:<26} {value}")
