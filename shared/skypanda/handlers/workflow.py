"""Workflows: submit (validate, store), start (make the jobs of eager tasks), advance (make,
skip or cancel waiting tasks, repeat loops, end the workflow), retry.

Eager tasks (only job-level dependencies on other eager tasks) get their jobs at start, children
before parents (reverse topological order): when a parent job ends, every child it has exists,
so its release finds them. Lazy tasks are made by `advance` once every task they wait for has
ended; their jobs' parents have all ended then, so each job starts activated or cancelled.
Every step is compare-and-set or idempotent (deterministic task and job ids), so redelivered
events and concurrent planners do each step once.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from skypanda.domain import events as ev
from skypanda.domain.budget import check_task_budget, check_workflow_budget
from skypanda.domain.dag import (
    GraphJob,
    KeyIndexes,
    child_status,
    graph_job_spec,
    missing_parent,
    parents_by_job,
    read_graph,
    summarize,
    task_job_specs,
)
from skypanda.domain.errors import InvalidInput
from skypanda.domain.events import WorkflowRef
from skypanda.domain.ids import job_id, workflow_task_id
from skypanda.domain.jobflow import new_job
from skypanda.domain.models import Job, JobSpec, Task
from skypanda.domain.planner import EndTask, Plan, Repeat, TaskFacts, latest_iterations, plan
from skypanda.domain.records import job_of_values
from skypanda.domain.splitter import count_jobs
from skypanda.domain.states import (
    TASK_FINAL,
    JobStatus,
    TaskStatus,
    WorkflowStatus,
)
from skypanda.domain.workflow import CompiledWorkflow, Workflow, WorkflowSpec, compile_workflow
from skypanda.handlers import chain, known
from skypanda.handlers.ends import task_moved, workflow_moved
from skypanda.handlers.rollup import roll_up_task, roll_up_task_fresh
from skypanda.handlers.services import Services, new_id
from skypanda.handlers.submit import check_quota, check_task

log = logging.getLogger(__name__)

GRAPH_CHUNK = 1 << 20


def graph_key(workflow_id: str) -> str:
    return f"workflows/{workflow_id}/graph.jsonl"


# -- submit -------------------------------------------------------------------------------------


def _graph_counts(
    cw: CompiledWorkflow, lines: Iterable[bytes], sink: list[bytes]
) -> dict[str, int]:
    """Validate a graph (streamed) and count each task's jobs; keep the lines in `sink` chunks."""
    counts = {t.name: 0 for t in cw.spec.tasks if t.graph}
    tasks = {t.name: t for t in cw.spec.tasks}
    buf: list[bytes] = []
    size = 0

    def kept() -> Iterator[bytes]:
        nonlocal size
        for line in lines:
            buf.append(line if line.endswith(b"\n") else line + b"\n")
            size += len(line)
            if size >= GRAPH_CHUNK:
                sink.append(b"".join(buf))
                buf.clear()
                size = 0
            yield line

    for job in read_graph(kept(), tasks):
        counts[job.task] += 1
    if buf:
        sink.append(b"".join(buf))
    for name, n in counts.items():
        if n == 0:
            raise InvalidInput(f"graph task {name!r} has no jobs in the graph file", task=name)
    return counts


def submit_workflow(
    svc: Services,
    spec: WorkflowSpec,
    owner: str,
    graph: Iterable[bytes] | None = None,
    *,
    workflow_id: str | None = None,
) -> Workflow:
    """Validate a workflow and store it with its first tasks. Nothing is stored if invalid.

    `graph` is the job graph file's lines when the workflow has graph tasks. `workflow_id`: the
    id to give it (a submission by message derives it from its key); default a new random one.

    Raises:
        InvalidInput: what `compile_workflow` finds, a missing or bad graph, unknown queues,
            a job-level mapping that leaves a job without parents, an unknown `start_after`
            trigger (a workflow with one is stored held: `handlers.chain`).
        QuotaExceeded: its tasks or jobs would take the owner past what they may have
            unended (every task the workflow declares is counted, with its jobs).
    """
    cw = compile_workflow(spec)
    chunks: list[bytes] = []
    counts: dict[str, int] = {}
    if spec.graph is not None:
        if graph is None:
            raise InvalidInput(f"workflow {spec.name} names graph {spec.graph!r}; send its lines")
        counts = _graph_counts(cw, graph, chunks)
    sizes = [sum(len(c) for c in chunks)]  # graph jobs: about their lines' size
    for t in spec.tasks:
        check_task(svc, t, count=False)
        if not t.graph:
            counts[t.name] = count_jobs(t)
            sizes.append(check_task_budget(t, counts[t.name]))
    check_workflow_budget(spec.name, sizes)
    check_quota(svc, owner, len(spec.tasks), sum(counts.values()))
    by_name = {t.name: t for t in spec.tasks}
    indexes: KeyIndexes = {}
    for t in spec.tasks:
        if t.depends:
            for _ in parents_by_job(t, by_name, indexes):  # raises on a mapping that fails
                pass
    after = spec.start_after
    if after is not None:
        chain.check_trigger(svc, after)
    now = svc.clock.now()
    wf_id = workflow_id or new_id("w")
    wf = Workflow(id=wf_id, spec=spec, owner=owner, created_at=now, updated_at=now,
                  reason=after.waiting_reason() if after else "")  # fmt: skip
    tasks = [_task_record(wf, cw, name, 1, counts[name], now) for name in cw.order]
    if indexes:  # for the start (in this process, usually): each key indexed once
        svc.memory.key_indexes[wf_id] = indexes
    for chunk in chunks:
        svc.blobs.append(graph_key(wf.id), chunk)
    if after is not None:
        # Held (registered without its event) until its trigger ends: `handlers.chain`.
        svc.workflows.add_workflow(wf, tasks, [])
        svc.memory.compiled[wf.id] = cw
        chain.decide_if_ended(svc, after)
        return svc.workflows.get_workflow(wf.id)
    svc.workflows.add_workflow(wf, tasks, [ev.workflow_registered(wf.id)])
    svc.memory.compiled[wf.id] = cw  # (its start here need not read a million inputs back)
    return wf


def _task_record(
    wf: Workflow, cw: CompiledWorkflow, name: str, iteration: int, n_jobs: int, now: float
) -> Task:
    wt = cw.spec.task(name)
    spec = wt.task_spec(n_jobs=n_jobs if wt.graph else None)
    return Task(
        id=workflow_task_id(wf.id, name, iteration),
        spec=spec,
        owner=wf.owner,
        n_jobs=n_jobs,
        created_at=now,
        updated_at=now,
        workflow_id=wf.id,
        iteration=iteration,
    )


# -- start --------------------------------------------------------------------------------------


def handle_registered(svc: Services, ref: WorkflowRef) -> None:
    start(svc, ref.workflow_id)


def start(svc: Services, workflow_id: str) -> None:
    """Make the jobs of the eager tasks (children first), then advance the workflow."""
    wf = svc.workflows.get_workflow(workflow_id)
    if wf.status is not WorkflowStatus.REGISTERED:
        return
    cw = known.compiled(svc, workflow_id)
    tasks = svc.workflows.workflow_tasks(workflow_id)
    records = {t.spec.name: t for t in tasks if t.iteration == 1}
    indexes = svc.memory.key_indexes.pop(workflow_id, None)
    for name in reversed(cw.eager):
        if records[name].status is TaskStatus.REGISTERED:
            split_task(svc, wf, cw, records[name], records, indexes)
    # A graph task's jobs were stored defined (their children may be in a graph task made
    # after them); now that all exist, their roots may run.
    for name in cw.eager:
        svc.workflows.release_roots(records[name].id, svc.clock.now())
    registered = [WorkflowStatus.REGISTERED]
    running = workflow_moved(svc, wf, WorkflowStatus.RUNNING)
    svc.workflows.set_workflow_status(
        workflow_id, registered, WorkflowStatus.RUNNING, events=running
    )
    advance(svc, workflow_id)


def _graph_lines(svc: Services, wf: Workflow) -> Iterator[bytes]:
    return iter(io.BytesIO(svc.blobs.read(graph_key(wf.id))))


def _job_specs(
    svc: Services,
    wf: Workflow,
    cw: CompiledWorkflow,
    task: Task,
    ids: Mapping[str, str],
    indexes: KeyIndexes | None = None,
) -> Iterator[JobSpec]:
    """The task's jobs with their parents' ids (`ids`: task name -> the record it waits for;
    `indexes`: key indexes computed already)."""
    wt = cw.spec.task(task.spec.name)
    if wt.graph:
        tasks = {t.name: t for t in cw.spec.tasks}
        for g in read_graph(_graph_lines(svc, wf), tasks):
            if g.task == wt.name:
                yield graph_job_spec(task.spec, g, _parent_ids(g, ids))
        return
    by_name = {t.name: t for t in cw.spec.tasks}
    refs = parents_by_job(wt, by_name, indexes) if wt.depends else None
    parent_lists = ([job_id(ids[n], i) for n, i in r] for r in refs) if refs is not None else None
    yield from task_job_specs(wt, parent_lists, iteration=task.iteration)


def _parent_ids(g: GraphJob, ids: Mapping[str, str]) -> list[str]:
    return [job_id(ids[n], i) for n, i in g.parents]


def _resolve(cw: CompiledWorkflow, task: Task, records: Mapping[str, Task]) -> dict[str, str]:
    """Task name -> id of the record `task` waits for: the same iteration inside its loop,
    else the latest record (loops are over by the time a task outside them is made)."""
    own_loop = cw.loop_of.get(task.spec.name)
    out = {}
    if cw.spec.task(task.spec.name).graph:  # graph parents may be in any graph task
        out.update({t.name: records[t.name].id for t in cw.spec.tasks if t.graph})
    for name in cw.prerequisites[task.spec.name]:
        if own_loop is not None and cw.loop_of.get(name) == own_loop:
            out[name] = workflow_task_id(task.workflow_id or "", name, task.iteration)
        else:
            out[name] = records[name].id
    return out


def split_task(
    svc: Services,
    wf: Workflow,
    cw: CompiledWorkflow,
    task: Task,
    records: Mapping[str, Task],
    indexes: KeyIndexes | None = None,
) -> bool:
    """Store the task's jobs (registered -> ready). For a lazy task, every parent has ended:
    each job starts activated, or cancelled when a parent failed (unless the task continues).
    An eager task is made after every task whose jobs wait for its own (`start`: children
    first), so its jobs without parents are activated at once: their children exist already;
    but a graph task's jobs may have children in a graph task made after it, so they are all
    stored defined, and `release_roots` activates its roots once every graph task exists."""
    now = svc.clock.now()
    ids = _resolve(cw, task, records)
    name = task.spec.name
    lazy = name in cw.lazy
    specs = _job_specs(svc, wf, cw, task, ids, indexes)
    statuses: dict[str, JobStatus] = {}
    if lazy:
        specs = iter(made := list(specs))
        wanted = list({p for s in made for p in s.parents})
        statuses = {j.id: j.status for j in svc.jobs.get_jobs(wanted).values()}
    hold = not lazy and cw.spec.task(name).graph
    make = _maker(task, now)
    goes_on = cw.continues(name)
    if lazy or hold:
        jobs = (_made(make(s), s, now, statuses, goes_on, lazy, hold) for s in specs)
    else:  # what `_made` would do: nothing
        jobs = (make(s) for s in specs)
    nudge = ev.jobs_activated(task.spec.queue, task.n_jobs, key=task.id)
    won = svc.tasks.add_jobs(
        task.id,
        jobs,
        expect=TaskStatus.REGISTERED,
        to=TaskStatus.READY,
        events=[nudge, *task_moved(svc, task, TaskStatus.READY, previous=TaskStatus.REGISTERED)],
        parent_status=statuses,
    )
    if won:
        log.info("workflow %s: task %s made (iteration %d)", wf.id, task.spec.name, task.iteration)
    return won


def _maker(task: Task, now: float) -> Callable[[JobSpec], Job]:
    """`new_job` of the task's specs, in a split of up to a million: the first job is made
    (and validated) by `new_job`, the others are copies of it with their own id, index,
    status, command, inputs and parents, which is all that `new_job` takes from a spec
    (already valid: a JobSpec) unless the task stages its inputs in (its commands are then
    rendered again per job by `new_job`). Three times cheaper than validating each."""
    if task.spec.stage_in:
        return lambda spec: new_job(task, spec, now)
    first: list[tuple[dict[str, Any], frozenset[str]]] = []
    task_id = task.id

    def make(spec: JobSpec) -> Job:
        if not first:
            job = new_job(task, spec, now)
            first.append((job.__dict__, frozenset(job.__pydantic_fields_set__ | _COPIED)))
            return job
        values = first[0][0].copy()
        values["id"] = job_id(task_id, spec.index)
        values["index"] = spec.index
        values["status"] = _DEFINED if spec.parents else _ACTIVATED
        values["command"] = spec.command
        values["inputs"] = spec.inputs
        values["parents"] = spec.parents
        return job_of_values(values, first[0][1])  # a third cheaper than model_copy

    return make


_DEFINED, _ACTIVATED = JobStatus.DEFINED, JobStatus.ACTIVATED
_COPIED = frozenset({"id", "index", "status", "command", "inputs", "parents"})


def _made(
    job: Job,
    spec: JobSpec,
    now: float,
    ended: Mapping[str, JobStatus],
    goes_on: bool,
    lazy: bool,
    hold: bool,
) -> Job:
    """What a new job of `spec` (made by `new_job`: activated without parents, else defined)
    becomes: held defined (`hold`, see release_roots), or in a lazy task what its parents'
    states (`ended`) say."""
    if hold and not spec.parents:
        return job.model_copy(update={"status": JobStatus.DEFINED})  # see release_roots
    if not lazy or not spec.parents:
        return job
    parents = summarize({p: ended.get(p) for p in spec.parents})
    status = child_status(parents, continue_on_failure=goes_on) or JobStatus.DEFINED
    if status is JobStatus.CANCELLED:
        update = {"status": status, "ended_at": now, "error_diag": missing_parent(parents)}
        return job.model_copy(update=update)
    return job.model_copy(update={"status": status})


# -- advance ------------------------------------------------------------------------------------


def _facts(svc: Services, cw: CompiledWorkflow, records: list[Task]) -> list[TaskFacts]:
    tested = {t.when.task for t in cw.spec.tasks if t.when and t.when.flag}
    tested |= {lp.until.task for lp in cw.spec.loops if lp.until.flag}
    out = []
    for t in records:
        flags: dict[str, frozenset[str]] = {}
        if t.spec.name in tested and t.status in TASK_FINAL:
            flags = {k: frozenset(v) for k, v in svc.tasks.task_flags(t.id).items()}
        out.append(TaskFacts(t.spec.name, t.iteration, t.status, flags))
    return out


def advance(svc: Services, workflow_id: str) -> WorkflowStatus | None:
    """Apply the workflow's plan until nothing is left to do; return its final state if it ended.

    Bounded by the workflow's number of tasks (and loop iterations), never by its jobs.
    """
    wf = svc.workflows.get_workflow(workflow_id)
    if wf.status is not WorkflowStatus.RUNNING:
        return None
    cw = known.compiled(svc, workflow_id)
    for _ in range(len(cw.order) * 4 + 10):
        records = svc.workflows.workflow_tasks(workflow_id)
        newest = latest(records)
        step = plan(cw, _facts(svc, cw, records))
        if step.empty:
            return None
        if step.final is not None:
            if svc.workflows.set_workflow_status(
                workflow_id,
                [WorkflowStatus.RUNNING],
                step.final,
                reason=step.reason,
                events=workflow_moved(svc, wf, step.final, step.reason),
            ):
                log.info("workflow %s %s %s", workflow_id, step.final, step.reason)
            return step.final
        _apply(svc, wf, cw, step, newest)
    return None


def roll_up_and_advance(svc: Services, task_id: str) -> None:
    """Roll the task up; if this process learnt of its end just now, advance its workflow (a
    redelivered event does it again after a crash)."""
    status, fresh = roll_up_task_fresh(svc, task_id)
    if status is not None and fresh:
        wf_id = known.task(svc, task_id).workflow_id
        if wf_id is not None:
            advance(svc, wf_id)


def latest(records: list[Task]) -> dict[str, Task]:
    """The latest iteration of each task of a workflow, by name."""
    return latest_iterations(records, lambda t: t.spec.name, lambda t: t.iteration)


def _apply(
    svc: Services, wf: Workflow, cw: CompiledWorkflow, step: Plan, latest: dict[str, Task]
) -> None:
    for end in step.ends:
        _end(svc, latest[end.name], end)
    for s in step.splits:
        task = latest[s.name]
        if split_task(svc, wf, cw, task, latest):
            roll_up_task(svc, task.id)  # every job may have started cancelled
    for r in step.repeats:
        _repeat(svc, wf, cw, r)


def _end(svc: Services, task: Task, end: EndTask) -> None:
    svc.tasks.set_task_status(
        task.id,
        [TaskStatus.REGISTERED],
        end.status,
        reason=end.reason,
        events=task_moved(svc, task, end.status, end.reason),
    )


def _repeat(svc: Services, wf: Workflow, cw: CompiledWorkflow, r: Repeat) -> None:
    now = svc.clock.now()
    for name in r.tasks:
        record = _task_record(wf, cw, name, r.iteration, count_jobs(cw.spec.task(name)), now)
        with contextlib.suppress(InvalidInput):  # made already by another planner (same id)
            svc.tasks.add_task(record, [])
    log.info("workflow %s: loop %s iteration %d", wf.id, r.loop, r.iteration)
