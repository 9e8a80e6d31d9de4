"""`skypanda bench monitor`: the time of every monitor read at a million jobs, embedded backend.

It builds a store the size asked (SQLite in a temporary directory, written through the store's
own `add_task`/`add_jobs`/`add_workflow`/`add_pilot`, attempts in one transaction), shaped like
a week of a busy campaign: many tasks of a few hundred to a few thousand jobs, two big ones
still running (a fifth and a tenth of all jobs), 20 owners, jobs ended over the week (more in
the last day), a mix of error codes with Zipf-like weights, log-normal run times and peak
memory. Then it times each Views call, each JSON route through the real WSGI app (Flask's test
client: routing, authentication, encoding, no socket), and each page of the web monitor
(/ui/...), `--runs` times each, and reports the median and the slowest, in milliseconds, and
this process's peak RSS.
"""

from __future__ import annotations

import json
import math
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from skypanda.adapters.clock import SystemClock
from skypanda.adapters.local.bus import OutboxBus
from skypanda.adapters.local.files import FileBlobs
from skypanda.adapters.local.sqlite import SqliteStore
from skypanda.adapters.local.sqlite.db import UPSERT_ATTEMPT, attempt_row
from skypanda.adapters.local.tokens import LocalTokens
from skypanda.api.app import create_app
from skypanda.domain.identity import Role
from skypanda.domain.ids import job_id
from skypanda.domain.models import Attempt, Job, Pilot, Queue, Resources, Task, TaskSpec
from skypanda.domain.states import JobStatus, PilotStatus, TaskStatus
from skypanda.domain.workflow import Workflow, WorkflowSpec, WorkflowTask
from skypanda.handlers.services import Services
from skypanda.ports.views import JobQuery, TaskQuery, WorkflowQuery, encode_cursor, query_key

DAY = 86_400.0
OWNERS = [f"user{i:02d}" for i in range(20)]
QUEUES = ["cpu", "highmem", "gpu", "short", "long"]
CODES = [1100, 1101, 1120, 1200, 1201, 1305, 1320, 1400, 1500, 1601]  # most frequent first
LIMIT_MS = 300.0


@dataclass
class Built:
    store: SqliteStore
    big: str  # the biggest task (running)
    small: str  # a typical ended task
    workflow: str
    seconds: float
    jobs: int
    tasks: int


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# -- building the store ----------------------------------------------------------------------------


def _sizes(total: int, rng: random.Random) -> list[int]:
    """Task sizes: a fifth and a tenth of the jobs in two big tasks, the rest in tasks of
    100 to 3000 jobs."""
    sizes = [total // 5, total // 10]
    left = total - sum(sizes)
    while left > 0:
        n = min(left, rng.randint(100, 3000))
        sizes.append(n)
        left -= n
    return [s for s in sizes if s > 0]


def _fate(rng: random.Random, running: bool) -> JobStatus:
    r = rng.random()
    if running:  # a running task: a quarter waiting, a tenth live
        if r < 0.25:
            return JobStatus.ACTIVATED
        if r < 0.35:
            return JobStatus.RUNNING
    if r < 0.88:
        return JobStatus.FINISHED
    if r < 0.97:
        return JobStatus.FAILED
    return JobStatus.CANCELLED


def _code(rng: random.Random) -> int:
    weights = [1 / (i + 1) for i in range(len(CODES))]
    return rng.choices(CODES, weights)[0]


def _jobs(
    task: Task, rng: random.Random, now: float, attempts: list[Attempt], *, running: bool
) -> Iterator[Job]:
    span = max(now - task.created_at, 60.0)
    memory = task.spec.resources.memory_mb
    for i in range(task.n_jobs):
        status = _fate(rng, running)
        jid = job_id(task.id, i)
        started = ended = rss = code = None
        diag = ""
        if status is not JobStatus.ACTIVATED:
            run = min(rng.lognormvariate(math.log(600), 1.0), 20 * 3600)
            # Ends spread over the task's life, more of them recently.
            ended = task.created_at + span * (1 - rng.random() ** 2)
            started = max(task.created_at, ended - run)
            if status is JobStatus.RUNNING:
                ended = None
            rss = int(memory * min(rng.lognormvariate(math.log(0.4), 0.5), 1.5))
        if status is JobStatus.FAILED:
            code = _code(rng)
            diag = f"payload failed with error {code}: see the log (job {i})"
        if status in (JobStatus.FINISHED, JobStatus.FAILED):
            attempts.append(
                Attempt(job_id=jid, attempt=1, pilot_id=f"p{i % 5000}", status=status,
                        started_at=started, ended_at=ended, exit_code=0 if code is None else 1,
                        error_code=code, error_diag=diag, max_rss_mb=rss)
            )  # fmt: skip
        yield Job.model_construct(
            id=jid, task_id=task.id, owner=task.owner, index=i, status=status, attempt=1,
            failures=int(status is JobStatus.FAILED), max_attempts=task.spec.max_attempts,
            queue=task.spec.queue, priority=task.spec.priority, resources=task.spec.resources,
            command=["run", str(i)], inputs=[], env={}, parents=[],
            pilot_id=None if started is None else f"p{i % 5000}", kill_requested=False,
            exit_code=None if ended is None else int(code is not None), error_code=code,
            error_diag=diag, log_uri=None, created_at=task.created_at, updated_at=ended or now,
            started_at=started, ended_at=ended, flags={}, stage_in=False, output_patterns=[],
            outputs=[], max_rss_mb=None if status is JobStatus.RUNNING else rss,
        )  # fmt: skip


def build(home: Path, n_jobs: int, seed: int = 7) -> Built:
    """A store of about `n_jobs` jobs (see the module docstring)."""
    rng = random.Random(seed)
    clock = SystemClock()
    now = clock.now()
    store = SqliteStore(home / "skypanda.db", clock=clock.now)
    t0 = time.perf_counter()
    for q in QUEUES:
        store.put_queue(Queue(name=q, pilot_resources=Resources(memory_mb=64_000, cores=32)))
        store.note_scaling(q, f"launched 4 pilots: {rng.randint(10, 900)} activated", now)
    spec = WorkflowSpec(name="wf", tasks=[WorkflowTask(name="a", command=["x"], n_jobs=1)])
    workflows = [
        Workflow(id=f"w{i:04d}", spec=spec, owner=rng.choice(OWNERS), status="done",
                 created_at=now - 7 * DAY * rng.random(), updated_at=now)
        for i in range(200)
    ]  # fmt: skip
    for wf in workflows:
        store.add_workflow(wf, [], [])
    sizes = _sizes(n_jobs, rng)
    attempts: list[Attempt] = []
    for k, size in enumerate(sizes):
        big = k < 2
        age = rng.uniform(0.5, 20) * 3600 if big else 7 * DAY * rng.random() ** 1.5
        status = TaskStatus.RUNNING if big or age < 3 * 3600 else rng.choice(
            [TaskStatus.DONE] * 6 + [TaskStatus.FINISHED, TaskStatus.FAILED]
        )  # fmt: skip
        created = now - age
        flow = workflows[k % len(workflows)] if k % 3 == 0 and not big else None
        task = Task(
            id=f"t{rng.getrandbits(48):012x}",
            spec=TaskSpec(name=f"{rng.choice(['reco', 'sim', 'calib', 'skim'])}-{k:05d}",
                          command=["run", "{index}"], n_jobs=size, queue=QUEUES[k % 5],
                          resources=Resources(memory_mb=rng.choice([2000, 4000, 8000]))),
            owner=OWNERS[k % len(OWNERS)], status=TaskStatus.REGISTERED, n_jobs=size,
            created_at=created, updated_at=now,
            workflow_id=None if flow is None else flow.id,
        )  # fmt: skip
        store.add_task(task, [])
        made = _jobs(task, rng, now, attempts, running=status is TaskStatus.RUNNING)
        store.add_jobs(task.id, made, expect=TaskStatus.REGISTERED, to=TaskStatus.READY)
        store.set_task_status(task.id, [TaskStatus.READY], status)
        if len(attempts) > 50_000:
            _add_attempts(store, attempts)
    _add_attempts(store, attempts)
    for i in range(5000):
        p = Pilot(id=f"p{i:05d}", queue=QUEUES[i % 5], created_at=now - DAY * rng.random(),
                  status=rng.choice(list(PilotStatus)))  # fmt: skip
        store.add_pilot(p)
    store.close()
    store = SqliteStore(home / "skypanda.db", clock=clock.now)
    with store._tx() as db:
        db.execute("ANALYZE")  # what a long-lived database has: the planner's statistics
    return _picked(store, time.perf_counter() - t0)


def reopen(home: Path) -> Built:
    """A store `build` made earlier in `home` (`--home`: measure again without building)."""
    t0 = time.perf_counter()
    store = SqliteStore(home / "skypanda.db", clock=SystemClock().now)  # migrations run here
    return _picked(store, time.perf_counter() - t0)


def _picked(store: SqliteStore, seconds: float) -> Built:
    """The store with the tasks the timings read: the biggest, and a typical one."""
    tasks = store._read("SELECT id, n_jobs FROM tasks ORDER BY n_jobs DESC, id")
    small = next((r["id"] for r in tasks[1:] if 1000 <= r["n_jobs"] <= 3000), tasks[-1]["id"])
    (wf,) = store._read("SELECT min(id) AS id FROM workflows")
    n = sum(int(r["n_jobs"]) for r in tasks)
    return Built(store, tasks[0]["id"], small, wf["id"], seconds, n, len(tasks))


def _add_attempts(store: SqliteStore, attempts: list[Attempt]) -> None:
    # No port writes attempts in bulk (a pilot's report writes its own): the rows the report
    # would have written, in one transaction.
    with store._tx() as db:
        db.executemany(UPSERT_ATTEMPT, [attempt_row(a) for a in attempts])
    attempts.clear()


# -- timing ----------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    fn()  # once to warm the page cache and the statement cache, as a server has them
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


def view_calls(b: Built) -> dict[str, Callable[[], Any]]:
    s, now = b.store, time.time()
    failed = frozenset({TaskStatus.FAILED})
    jq = JobQuery(statuses=frozenset({JobStatus.FAILED}))
    deep = encode_cursor("jobs", query_key("jobs", b.big, JobQuery()), [b.jobs // 10])
    return {
        "task_page": lambda: s.task_page(TaskQuery(), cursor=None, limit=100),
        "task_page owner": lambda: s.task_page(TaskQuery(owner="user03"), cursor=None, limit=100),
        "task_page status": lambda: s.task_page(TaskQuery(statuses=failed), cursor=None, limit=100),
        "task_page owner+2 states": lambda: s.task_page(
            TaskQuery(owner="user03", statuses=frozenset({TaskStatus.DONE, TaskStatus.FAILED})),
            cursor=None,
            limit=100,
        ),
        "task_page name prefix": lambda: s.task_page(
            TaskQuery(name_prefix="calib-"), cursor=None, limit=100
        ),
        "workflow_page": lambda: s.workflow_page(WorkflowQuery(), cursor=None, limit=100),
        "job_page big": lambda: s.job_page(b.big, JobQuery(), cursor=None, limit=100),
        "job_page big deep": lambda: s.job_page(b.big, JobQuery(), cursor=deep, limit=100),
        "job_page big failed": lambda: s.job_page(b.big, jq, cursor=None, limit=100),
        "job_page big code": lambda: s.job_page(
            b.big, JobQuery(error_code=CODES[3]), cursor=None, limit=100
        ),
        "error_summary big": lambda: s.error_summary(b.big),
        "duration_histogram big": lambda: s.duration_histogram(b.big),
        "memory_use big": lambda: s.memory_use(b.big),
        "state_timeline big": lambda: s.state_timeline(b.big),
        "state_timeline small": lambda: s.state_timeline(b.small),
        "job_counts big": lambda: s.job_counts(b.big),
        "ended_per_minute hour": lambda: s.ended_per_minute(since=now - 3600),
        "ended_per_minute day": lambda: s.ended_per_minute(since=now - DAY),
        "ended_per_minute day owner": lambda: s.ended_per_minute(since=now - DAY, owner="user01"),
        "ended_per_minute big task": lambda: s.ended_per_minute(since=now - DAY, task_id=b.big),
        "failures_by_code day": lambda: s.failures_by_code(since=now - DAY),
        "queue_views": s.queue_views,
        "metric_counts (a /metrics scrape's reads)": s.metric_counts,
        "pilot_page": lambda: s.pilot_page(limit=100),
        "pilot_page queue running": lambda: s.pilot_page(
            queue="cpu", statuses=[PilotStatus.RUNNING], limit=100
        ),
    }


def routes(b: Built) -> list[str]:
    big, small = b.big, b.small
    return [
        "/v1/tasks",
        "/v1/tasks?owner=user03&status=done&status=failed",
        "/v1/workflows",
        f"/v1/tasks/{big}",
        f"/v1/tasks/{big}/jobs?limit=100",
        f"/v1/tasks/{big}/jobs?status=failed&limit=100",
        f"/v1/tasks/{big}/errors",
        f"/v1/tasks/{big}/timeline",
        f"/v1/tasks/{big}/durations",
        f"/v1/tasks/{big}/memory",
        f"/v1/tasks/{small}/timeline",
        "/v1/stats/throughput",
        "/v1/stats/failures",
        "/v1/queues/status",
        "/v1/pilots",
        "/metrics",
    ]


UI_PAGES = ["/ui/tasks", "/ui/tasks?owner=*", "/ui/tasks?owner=*&status=failed",
            "/ui/tasks/{big}", "/ui/tasks/{small}", "/ui/jobs/{job}", "/ui/workflows",
            "/ui/workflows/{workflow}", "/ui/queues", "/ui/plots"]  # fmt: skip


def run_monitor(n_jobs: int, runs: int, home: Path) -> dict[str, Any]:
    reused = (home / "skypanda.db").exists()
    b = reopen(home) if reused else build(home, n_jobs)
    result: dict[str, Any] = {
        "jobs": b.jobs, "tasks": b.tasks, "runs": runs,
        "open_s" if reused else "build_s": round(b.seconds, 1),
        "db_mb": round((home / "skypanda.db").stat().st_size / 2**20),
    }  # fmt: skip
    try:
        result["views"] = {name: timed(fn, runs) for name, fn in view_calls(b).items()}
        tokens = LocalTokens(home / "users.json")
        token = tokens.issue("bench", Role.ADMIN)
        svc = Services(store=b.store, bus=OutboxBus(b.store), blobs=FileBlobs(home / "blobs"),
                       clock=SystemClock())  # fmt: skip
        app = create_app(svc, tokens)
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}

        kept = app.extensions.get("skypanda.monitor.charts")

        def get(path: str) -> Callable[[], Any]:
            def call() -> None:
                if kept is not None:
                    kept.forget()  # first-view costs: nothing the monitor kept from a warm-up
                reply = client.get(path, headers=headers)
                if reply.status_code != 200:
                    raise click.ClickException(
                        f"GET {path}: {reply.status_code} {reply.text[:300]}"
                    )

            return call

        result["routes"] = {path: timed(get(path), runs) for path in routes(b)}
        known = {rule.rule.split("<")[0] for rule in app.url_map.iter_rules()}
        job = job_id(b.big, 7)
        pages = [p.format(big=b.big, small=b.small, job=job, workflow=b.workflow) for p in UI_PAGES]
        present = [p for p in pages if any(p.startswith(k) and k.startswith("/ui/") for k in known)]
        result["pages"] = {path: timed(get(path), runs) for path in present}
    finally:
        b.store.close()
    slow = [
        f"{group}: {name}"
        for group in ("views", "routes", "pages")
        for name, t in result.get(group, {}).items()
        if t["max_ms"] > LIMIT_MS
    ]
    result["over_300_ms"] = slow
    result["peak_rss_mb"] = _rss_mb()
    return result


@click.command()
@click.option("--jobs", default=1_000_000, show_default=True, help="About how many jobs.")
@click.option("--runs", default=5, show_default=True, help="Timed runs of each call.")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the store here (built if absent, else measured again as it is).",
)
@click.option("--json", "as_json", is_flag=True)
def monitor(jobs: int, runs: int, home: Path | None, as_json: bool) -> None:
    """Time every monitor read (views, JSON routes, pages) on an embedded store of --jobs jobs."""
    if not 1000 <= jobs <= 20_000_000:
        raise click.BadParameter("must be between 1000 and 20,000,000", param_hint="--jobs")
    if not 1 <= runs <= 100:
        raise click.BadParameter("must be between 1 and 100", param_hint="--runs")
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
        result = run_monitor(jobs, runs, home)
    else:
        with tempfile.TemporaryDirectory(prefix="skypanda-bench-monitor-") as tmp:
            result = run_monitor(jobs, runs, Path(tmp))
    if as_json:
        click.echo(json.dumps(result))
        return
    for key in ("jobs", "tasks", "build_s", "open_s", "db_mb", "runs", "peak_rss_mb"):
        if key in result:
            click.echo(f"{key:<12} {result[key]}")
    for group in ("views", "routes", "pages"):
        click.echo(f"\n{group:<58} {'median ms':>10} {'max ms':>8}")
        for name, t in result[group].items():
            click.echo(f"{name:<58} {t['median_ms']:>10} {t['max_ms']:>8}")
    click.echo(f"\nover {LIMIT_MS:.0f} ms: {', '.join(result['over_300_ms']) or 'none'}")
