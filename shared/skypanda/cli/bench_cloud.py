"""Benchmarks of the gcp backend on the emulators: what it costs per job, and how claims
behave under many concurrent pilots."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from skypanda.cli.bench import wait_for_condition
from skypanda.domain.fleet import CADENCES
from skypanda.domain.models import Queue, Resources, TaskSpec
from skypanda.domain.states import PilotStatus, TaskStatus
from skypanda.handlers.submit import submit
from skypanda.runtime import cloudfn

# List prices (USD) used for the estimate; see BENCHMARKS.md for where they come from.
PRICES = {
    "firestore_read": 0.06 / 100_000,  # multi-region (nam5); regional is half
    "firestore_write": 0.18 / 100_000,
    "firestore_delete": 0.02 / 100_000,
    "function_invocation": 0.40 / 1_000_000,
    "pubsub_message": 40.0 / 2**40 * 1000,  # $40/TiB, billed at 1 KB per message at least
    "gcs_class_a": 0.005 / 1000,  # Standard storage: an object written (a log chunk)
}

HEARTBEAT_OPS = {"reads": 3, "writes": 1}
"""What one heartbeat of a pilot holding one job costs in Firestore: its record read and
written, the query for kill flags and the query of its live jobs (a read each). Checked by
tests/contract/test_firestore_specific.py."""
LOG_FLUSH_OPS = {"reads": 1, "writes": 0}
"""What one chunk of a running job's output costs in Firestore: the job read (the chunk itself
is an object written to Cloud Storage). Checked with HEARTBEAT_OPS."""


def job_hour(queue: Queue) -> dict[str, Any]:
    """What an hour of a running job costs in calls to the server, at the queue's cadence: its
    pilot's heartbeats (a pilot running one job: more jobs per pilot share the beats) and its
    output sent every `log_flush_interval_s` (a job that prints all the time; a silent one
    sends nothing)."""
    beats = 3600.0 / queue.heartbeat_interval_s
    flushes = 3600.0 / queue.log_flush_interval_s
    reads = beats * HEARTBEAT_OPS["reads"] + flushes * LOG_FLUSH_OPS["reads"]
    writes = beats * HEARTBEAT_OPS["writes"] + flushes * LOG_FLUSH_OPS["writes"]
    usd = (
        (beats + flushes) * PRICES["function_invocation"]
        + reads * PRICES["firestore_read"]
        + writes * PRICES["firestore_write"]
    )
    return {
        "heartbeat_interval_s": queue.heartbeat_interval_s,
        "log_flush_interval_s": queue.log_flush_interval_s,
        "function_invocations": round(beats + flushes, 1),
        "firestore_reads": round(reads, 1),
        "firestore_writes": round(writes, 1),
        "usd_per_million_job_hours": round(usd * 1_000_000, 2),
        "gcs_writes": round(flushes, 1),
        "gcs_usd_per_million_job_hours": round(flushes * PRICES["gcs_class_a"] * 1_000_000, 2),
    }


def _ttl_documents(client: Any, prefix: str) -> int:
    """Documents in the collections a TTL policy empties (each deletion is a billed delete)."""
    from skypanda.runtime.deployment import COLLECTIONS

    total = 0
    for c in COLLECTIONS:
        if c.ttl_field is not None:
            total += int(client.collection(f"{prefix}{c.name}").count().get()[0][0].value)
    return total


def _emit(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key, value in result.items():
            click.echo(f"{key:<34} {value}")


def _submit(svc: Any, shape: str, jobs: int) -> Callable[[Any], Any]:
    """Submit the bench's work: a bag (one task of `jobs` jobs) or a chain (one graph task,
    each job after the one before). Returns what to watch: a task's or a workflow's getter."""
    if shape == "bag":
        spec = TaskSpec(name="cost", command=["true"], n_jobs=jobs, queue="bench", max_attempts=1)
        task = submit(svc, spec, owner="bench")
        return lambda store: store.get_task(task.id, counts=False).status
    from skypanda.domain.workflow import WorkflowSpec
    from skypanda.handlers import workflow

    link = {"name": "link", "command": ["true"], "graph": True, "queue": "bench",
            "max_attempts": 1}  # fmt: skip
    wf_spec = WorkflowSpec.model_validate({"name": "cost", "graph": "g", "tasks": [link]})
    nodes = (
        {"id": f"j{k}", "task": "link", "inputs": [f"i{k}"], "parents": [f"j{k - 1}"] if k else []}
        for k in range(jobs)
    )
    lines = ((json.dumps(n) + "\n").encode() for n in nodes)
    wf = workflow.submit_workflow(svc, wf_spec, "bench", lines)
    return lambda store: store.get_workflow(wf.id).status


def run_cost(jobs: int, pilots: int, home: Path, shape: str = "bag") -> dict[str, Any]:
    from skypanda.domain.states import WORKFLOW_FINAL
    from skypanda.runtime.emulated import EmulatedCloud, EmulatedOptions

    # Local pilots, at the cadence (heartbeats, output) of a queue on Cloud Run or GKE
    cadence = CADENCES["cloudrun"]._asdict()
    queue = Queue(
        name="bench", min_pilots=pilots, max_pilots=pilots, jobs_per_acquire=64,
        idle_timeout_s=120.0, **cadence,
    )  # fmt: skip
    prefix = f"b{uuid.uuid4().hex[:6]}-"
    with EmulatedCloud(EmulatedOptions(home=home, queue=queue, tick_s=5.0, prefix=prefix)) as cloud:
        store = cloud.store
        # Watch through a client of its own: the bench's polling is not the system's bill.
        from skypanda.adapters.gcp.firestore import FirestoreStore

        client = type(cloud.firestore)()
        watcher = FirestoreStore(client, clock=time.time, prefix=prefix)

        def registered() -> bool:
            live = store.list_pilots(queue="bench")
            return sum(p.status is PilotStatus.RUNNING for p in live) >= pilots

        wait_for_condition(registered, 120, "pilots to register")
        cloud.meter.reset()
        cloudfn.invocations.clear()
        published0, ticks0 = cloud.bus.published, cloud.ticks
        bell0 = cloud.doorbell.reads
        ttl0 = _ttl_documents(client, prefix)
        start = time.perf_counter()
        ended = {TaskStatus.DONE, TaskStatus.FAILED, *WORKFLOW_FINAL}
        status_of = _submit(cloud.svc, shape, jobs)
        done = lambda: status_of(watcher) in ended  # noqa: E731
        wait_for_condition(done, 3600, f"the {shape}")
        seconds = time.perf_counter() - start
        # Events still on their way (job ends after the rollup) are billed too: let them land.
        time.sleep(1.0)
        assert cloud.bridge is not None
        cloud.bridge.drain()
        ops = cloud.meter.snapshot()
        breakdown = dict(cloud.meter.by_operation)
        # The long-polls' listeners are billed reads too (the meter sees requests, not streams)
        bell_reads = cloud.doorbell.reads - bell0
        ops["reads"] += bell_reads
        breakdown["doorbell_listeners.reads"] = bell_reads
        breakdown = dict(sorted(breakdown.items()))
        calls = dict(cloudfn.invocations)
        published = cloud.bus.published - published0 + cloud.ticks - ticks0
        status = str(status_of(store))
        ttl_deletes = _ttl_documents(client, prefix) - ttl0
        watcher.close()
    report = {"shape": shape, **_cost_report(jobs, pilots, seconds, status, ops, calls, published)}
    report["firestore_ops_by_operation_per_job"] = {
        k: round(v / jobs, 3) for k, v in breakdown.items()
    }
    # Not the functions' operations: Firestore's TTL policy deletes each outbox event (and
    # audit entry) some time after it was handled, and bills each deletion.
    report["ttl_deletes_per_job"] = round(ttl_deletes / jobs, 3)
    report["ttl_usd_per_million_jobs"] = round(
        ttl_deletes / jobs * PRICES["firestore_delete"] * 1_000_000, 2
    )
    report["job_hour"] = job_hour(queue)
    return report


def _cost_report(
    jobs: int, pilots: int, seconds: float, status: str, ops: dict[str, int],
    calls: dict[str, int], published: int,
) -> dict[str, Any]:  # fmt: skip
    total_ops = sum(ops.values())
    invocations = sum(calls.values())
    per_million = 1_000_000 / jobs
    dollars = (
        ops["reads"] * PRICES["firestore_read"]
        + ops["writes"] * PRICES["firestore_write"]
        + ops["deletes"] * PRICES["firestore_delete"]
        + invocations * PRICES["function_invocation"]
        + published * PRICES["pubsub_message"]
    ) * per_million
    return {
        "jobs": jobs,
        "pilots": pilots,
        "status": status,
        "seconds": round(seconds, 2),
        "firestore_ops_per_job": round(total_ops / jobs, 3),
        "firestore_reads_per_job": round(ops["reads"] / jobs, 3),
        "firestore_writes_per_job": round(ops["writes"] / jobs, 3),
        "firestore_deletes_per_job": round(ops["deletes"] / jobs, 3),
        "function_invocations_per_job": round(invocations / jobs, 3),
        "function_invocations_by_trigger": calls,
        "pubsub_publishes_per_job": round(published / jobs, 4),
        "usd_per_million_jobs": round(dollars, 2),
    }


@click.command()
@click.option("--jobs", default=1000, show_default=True, help="Trivial jobs in one task.")
@click.option("--pilots", default=2, show_default=True, help="Local pilots.")
@click.option(
    "--shape",
    type=click.Choice(["bag", "chain"]),
    default="bag",
    show_default=True,
    help="bag: one task of independent jobs; chain: each job after the one before (a graph "
    "task of a workflow), the critical path of a DAG.",
)
@click.option("--json", "as_json", is_flag=True)
def cost(jobs: int, pilots: int, shape: str, as_json: bool) -> None:
    """Billed operations per job on the emulators: Firestore reads/writes/deletes (counted at
    the client, and the long-polls' listeners), function invocations, Pub/Sub publishes; and
    the list-price cost of 1M jobs."""
    with tempfile.TemporaryDirectory(prefix="skypanda-bench-") as tmp:
        _emit(run_cost(jobs, pilots, Path(tmp), shape), as_json)


def _claimer(store: Any, pilot: str, taken: list[str], errors: list[str]) -> None:
    idle = 0
    while idle < 3:
        try:
            jobs = store.claim_jobs("bench", pilot, 8, Resources(memory_mb=4000), time.time())
        except Exception as e:  # a pilot retries a failed acquire; count it
            errors.append(type(e).__name__)
            continue
        idle = idle + 1 if not jobs else 0
        taken.extend(j.id for j in jobs)


def run_dispatch(jobs: int, pilots: int, processes: int | None = None) -> dict[str, Any]:
    """`processes`: how many server processes (stores) the pilots' claims are spread over
    (None: one each). Claims served by one process take turns; only different processes race."""
    from google.cloud import firestore

    from skypanda.adapters.gcp.firestore import FirestoreStore
    from skypanda.handlers.split import handle as split
    from skypanda.runtime import emulators

    emu = emulators.firestore()
    stores: list[Any] = []
    try:
        os.environ.update(emulators.env_for(emu))
        prefix = f"d{uuid.uuid4().hex[:6]}-"
        for _ in range(max(1, min(processes or pilots, pilots))):
            client = firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"])
            stores.append(FirestoreStore(client, clock=time.time, prefix=prefix))
        return _dispatch_round(stores, jobs, pilots, split)
    finally:
        for store in stores:
            store.close()
        emu.stop()


def _dispatch_round(stores: list[Any], jobs: int, pilots: int, split: Any) -> dict[str, Any]:
    from skypanda.domain.events import TaskRef
    from skypanda.handlers.services import Services

    store = stores[0]
    store.put_queue(Queue(name="bench", max_pilots=pilots))
    svc = Services(store=store, bus=_NoBus(), blobs=_NoBlobs(), clock=_Clock())
    task = submit(svc, TaskSpec(name="d", command=["true"], n_jobs=jobs, queue="bench"), owner="b")
    split(svc, TaskRef(task_id=task.id))
    taken: list[list[str]] = [[] for _ in range(pilots)]
    errors: list[str] = []
    threads = [
        threading.Thread(target=_claimer, args=(stores[i % len(stores)], f"p{i}", taken[i], errors))
        for i in range(pilots)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    counts = Counter(j for ids in taken for j in ids)
    stats: Counter[str] = sum((s.claim_stats for s in stores), Counter())
    return {
        "jobs": jobs,
        "pilots": pilots,
        "processes": len(stores),
        "claimed": len(counts),
        "seconds": round(seconds, 2),
        "jobs_per_s": round(len(counts) / seconds, 1),
        "claim_commits": stats["commits"],
        "conflict_rate": round(stats["conflicts"] / max(1, stats["commits"]), 3),
        "double_dispatches": sum(1 for n in counts.values() if n > 1),
        "acquire_errors": len(errors),
    }


class _Clock:
    def now(self) -> float:
        return time.time()


class _NoBus:
    def publish(self, events: Any) -> None:
        """The dispatch benchmark measures claims only: nothing listens to events."""


class _NoBlobs:
    def append(self, key: str, data: bytes) -> None: ...

    def read(self, key: str) -> bytes:
        return b""

    def stream(self, key: str, *, last: int | None = None) -> Any:
        return iter(())

    def uri(self, key: str) -> str:
        return key


@click.command()
@click.option("--backend", type=click.Choice(["emulators"]), default="emulators", show_default=True)
@click.option(
    "--pilots", default=20, show_default=True, help="Concurrent claiming pilots (threads)."
)
@click.option("--jobs", default=2000, show_default=True)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="Server processes the pilots' claims go to (default: one per pilot, every claim "
    "racing the others; claims that share a process take turns).",
)
@click.option("--json", "as_json", is_flag=True)
def dispatch(backend: str, pilots: int, jobs: int, processes: int | None, as_json: bool) -> None:
    """Concurrent pilots claiming from one queue on Firestore: jobs/s, conflicts, and a check
    that no job was handed to two pilots."""
    _emit(run_dispatch(jobs, pilots, processes), as_json)
