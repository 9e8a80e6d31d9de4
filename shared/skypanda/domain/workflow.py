"""Workflows (iDDS workflows): a graph of tasks, what they wait for, and when they run at all.

A workflow file names tasks (each a task spec) and how they depend on each other:

    after: [A]                   task level: this task is made once all of A has ended well
    depends: [{task: A, by: index}]   job level: job i waits for job i of A
    depends: [{task: A, by: visit}]   job level: a job waits for every job of A sharing a
                                       value of the key `visit` (keys: regexes over inputs)
    graph: true                  job level, explicit: jobs and parents come from the
                                 workflow's job graph file (JSON lines)
    when: {task: A, status: failed}        conditions (iDDS Condition)
    when: {task: A, flag: converged}
    loops: [{name, tasks, until, max_iterations}]    iDDS LoopWorkflow

`compile_workflow` validates all of it and answers the questions the engine asks: the order in
which to make tasks, which tasks are made at once ("eager": their jobs exist from the start and
are released job by job) and which wait for other tasks to end ("lazy": task-level
dependencies, conditions, loop bodies and anything downstream of those).
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from skypanda.domain.chain import StartAfter
from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import NAME_PATTERN, TaskSpec, check_job_source
from skypanda.domain.notifications import (
    DEFAULT_NOTIFY_ON,
    MAX_NOTIFY_URLS,
    NotifyOnList,
    WebhookUrl,
)
from skypanda.domain.patterns import compile_user_pattern
from skypanda.domain.splitter import check_command, count_jobs
from skypanda.domain.states import WorkflowStatus
from skypanda.domain.values import Flag, Int, Strict

MAX_TASKS = 500
MAX_ITERATIONS = 100
MAX_WORKFLOW_JOBS = 2_000_000
MAX_PARENTS_PER_JOB = 10_000
MAX_PATH_CHARS = 4096
MAX_FLAG_CHARS = 1000
"""A flag's name or value (as a pilot may report it, `records.JobReport.flags`)."""
_TaskRef = Annotated[str, Field(min_length=1, max_length=100)]  # a task's name (NAME_PATTERN)
INDEX = "index"


class JobDependency(Strict):
    """Job-level dependency on another task: by index, or by a key both tasks declare."""

    task: _TaskRef
    by: str = Field(default=INDEX, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class Condition(Strict):
    """Run a task only if another task ended a given way or produced a flag (iDDS Condition).

    A flag is a `name=value` line the payload wrote to the file named by $SKYPANDA_FLAGS; the
    condition holds if any job of the task set it (to `equals`, when given; to anything but
    "", "0", "false" or "no" otherwise).
    """

    task: _TaskRef
    status: Literal["succeeded", "failed", "ended"] | None = None
    flag: str | None = Field(default=None, max_length=MAX_FLAG_CHARS)
    equals: str | None = Field(default=None, max_length=MAX_FLAG_CHARS)

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        if (self.status is None) == (self.flag is None):
            raise ValueError("a condition tests either status or flag (exactly one)")
        if self.equals is not None and self.flag is None:
            raise ValueError("equals goes with flag")
        return self


class WorkflowTask(TaskSpec):
    """A task of a workflow: a task spec plus what it waits for."""

    after: list[_TaskRef] = Field(default_factory=list, max_length=MAX_TASKS)
    depends: list[JobDependency] = Field(default_factory=list, max_length=MAX_TASKS)
    when: Condition | None = None
    keys: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=100)], str] = (
        Field(default_factory=dict, max_length=50)
    )
    continue_on_failure: Flag | None = None
    graph: Flag = False

    @model_validator(mode="after")
    def _inputs_or_n_jobs(self) -> WorkflowTask:
        if self.start_after is not None:
            raise ValueError(
                "start_after holds a whole submission: give it to the workflow, not to its "
                "task (a task waits for the workflow's other tasks with after:)"
            )
        if self.graph:
            if self.inputs is not None or self.n_jobs is not None:
                raise ValueError(
                    "a graph task takes its jobs from the graph file: no inputs/n_jobs"
                )
            if self.depends:
                raise ValueError("a graph task's parents come from the graph file: no depends")
            return self
        check_job_source(self)
        return self

    @field_validator("keys")
    @classmethod
    def _regexes(cls, keys: dict[str, str]) -> dict[str, str]:
        for name, pattern in keys.items():
            try:
                compiled = compile_user_pattern(pattern, "regular expression")
            except InvalidInput as e:
                raise ValueError(f"key {name!r}: {e.message}") from e
            if compiled.groups > 1:
                raise ValueError(f"key {name!r}: use at most one group in {pattern!r}")
        return keys

    def task_spec(self, n_jobs: int | None = None) -> TaskSpec:
        """The plain task spec stored with the task (workflow fields stay with the workflow);
        a graph task's job count comes from the graph (`n_jobs`)."""
        plain = self.model_dump(
            by_alias=True,
            exclude={"after", "depends", "when", "keys", "continue_on_failure", "graph"},
        )
        if self.graph:
            plain["n_jobs"] = n_jobs
        return TaskSpec.model_validate(plain)


class Loop(Strict):
    """Repeat `tasks` until `until` holds on an iteration, at most `max_iterations` times."""

    name: str = Field(pattern=NAME_PATTERN)
    tasks: list[_TaskRef] = Field(min_length=1, max_length=MAX_TASKS)
    until: Condition
    max_iterations: Int = Field(ge=1, le=MAX_ITERATIONS)


class WorkflowSpec(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    tasks: list[WorkflowTask] = Field(min_length=1, max_length=MAX_TASKS)
    loops: list[Loop] = Field(default_factory=list, max_length=MAX_TASKS)
    continue_on_failure: Flag = False
    # where the job graph file is (resolved by whoever submits)
    graph: str | None = Field(default=None, max_length=MAX_PATH_CHARS)
    start_after: StartAfter | None = None  # held until another task or workflow ends (chain)
    # Webhooks told when the workflow ends (each task's own `notify:` when that task ends)
    notify: list[WebhookUrl] = Field(default_factory=list, max_length=MAX_NOTIFY_URLS)
    # What is told about it: `end` (the default), `job_end` (each end of its tasks' jobs),
    # `state` (each change of its status and its tasks'); [] for nothing (domain.notifications)
    notify_on: NotifyOnList = Field(default_factory=lambda: list(DEFAULT_NOTIFY_ON))

    def task(self, name: str) -> WorkflowTask:
        return next(t for t in self.tasks if t.name == name)


class Workflow(Strict):
    """A stored workflow."""

    id: str
    spec: WorkflowSpec
    owner: str = "local"
    status: WorkflowStatus = WorkflowStatus.REGISTERED
    reason: str = ""
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class CompiledWorkflow:
    """A validated workflow and the answers the engine needs from it."""

    spec: WorkflowSpec
    order: tuple[str, ...]  # topological: every task after the tasks it needs
    prerequisites: Mapping[str, frozenset[str]]  # every task a task waits for, any kind
    lazy: frozenset[str]
    loop_of: Mapping[str, str]  # body task -> loop name
    job_parents: frozenset[str]  # tasks whose jobs may be parents of jobs (edges out of them)

    @property
    def eager(self) -> tuple[str, ...]:
        return tuple(n for n in self.order if n not in self.lazy)

    def continues(self, name: str) -> bool:
        own = self.spec.task(name).continue_on_failure
        return self.spec.continue_on_failure if own is None else own

    def has_job_children(self, name: str) -> bool:
        """Whether a job of task `name` may have children (job-level dependents: a task that
        `depends` on it, or, for a graph task, any graph job naming it in the graph file).
        When not, its end releases nothing, and the release need not look for edges."""
        return name in self.job_parents

    def loop(self, name: str) -> Loop:
        return next(lp for lp in self.spec.loops if lp.name == name)

    def edges(self) -> Iterable[tuple[str, str]]:
        """(prerequisite, task) pairs: the task graph, for export."""
        for name in self.order:
            for p in sorted(self.prerequisites[name]):
                yield p, name


def _refs(task: WorkflowTask) -> list[tuple[str, str]]:
    """(referenced task, what references it) for every reference a task makes."""
    out = [(a, "after") for a in task.after]
    out += [(d.task, "depends") for d in task.depends]
    if task.when is not None:
        out.append((task.when.task, "when"))
    return out


def _check_names(spec: WorkflowSpec) -> None:
    seen: set[str] = set()
    for t in spec.tasks:
        if t.name in seen:
            raise InvalidInput(f"workflow {spec.name}: duplicate task name {t.name!r}", task=t.name)
        seen.add(t.name)
    for t in spec.tasks:
        for ref, kind in _refs(t):
            if ref not in seen:
                raise InvalidInput(
                    f"task {t.name!r}: {kind} names unknown task {ref!r} "
                    f"(tasks: {', '.join(sorted(seen))})",
                    task=t.name,
                )
            if ref == t.name:
                raise InvalidInput(f"task {t.name!r}: {kind} names the task itself", task=t.name)
        if t.graph and spec.graph is None:
            raise InvalidInput(f"task {t.name!r} says graph: true but the workflow has no graph")
    if spec.graph is not None and not any(t.graph for t in spec.tasks):
        raise InvalidInput("the workflow names a graph file but no task says graph: true")


def _check_loops(spec: WorkflowSpec, names: set[str]) -> dict[str, str]:
    loop_of: dict[str, str] = {}
    loop_names: set[str] = set()
    for lp in spec.loops:
        if lp.name in loop_names or lp.name in names:
            raise InvalidInput(f"loop {lp.name!r}: name already used by a task or loop")
        loop_names.add(lp.name)
        for name in lp.tasks:
            if name not in names:
                raise InvalidInput(f"loop {lp.name!r}: unknown task {name!r}")
            if name in loop_of:
                raise InvalidInput(f"task {name!r} is in two loops: {loop_of[name]}, {lp.name}")
            if spec.task(name).graph:
                raise InvalidInput(f"loop {lp.name!r}: graph task {name!r} cannot be repeated")
            loop_of[name] = lp.name
        if lp.until.task not in lp.tasks:
            raise InvalidInput(
                f"loop {lp.name!r}: until tests task {lp.until.task!r}, which is not in the loop"
            )
    return loop_of


def _check_loops_closed(prereqs: Mapping[str, frozenset[str]], loop_of: Mapping[str, str]) -> None:
    """Each loop must be one step of the graph: no path may leave a loop and come back into it
    (a task outside that waits for one body task and is needed by another would wait for the
    loop to end while the loop waits for it). Checked on the graph with each loop as one node.
    """

    def node(name: str) -> str:
        return f"loop {loop_of[name]!r}" if name in loop_of else repr(name)

    condensed: dict[str, set[str]] = {}
    for name, needs in prereqs.items():
        mine = condensed.setdefault(node(name), set())
        mine.update(node(n) for n in needs if node(n) != node(name))
    try:
        tuple(graphlib.TopologicalSorter(condensed).static_order())
    except graphlib.CycleError as e:
        cycle = list(e.args[1])
        raise InvalidInput(
            f"a loop is not closed: {_cycle_message(cycle)}; a task outside a loop cannot both "
            "need one of its tasks and be needed by another",
            cycle=cycle,
        ) from e


def _check_job_dependencies(spec: WorkflowSpec) -> None:
    """Key dependencies need the key on both sides; index ones need equal job counts."""
    for t in spec.tasks:
        for d in t.depends:
            parent = spec.task(d.task)
            if parent.graph:
                raise InvalidInput(
                    f"task {t.name!r}: depends on graph task {d.task!r} job by job; use after"
                )
            if d.by == INDEX:
                nc, np_ = count_jobs(t), count_jobs(parent)
                if nc != np_:
                    raise InvalidInput(
                        f"task {t.name!r}: depends on {d.task!r} on index, but it has {nc} jobs "
                        f"and {d.task!r} has {np_}",
                        task=t.name,
                    )
                continue
            for side in (t, parent):
                if d.by not in side.keys:
                    raise InvalidInput(
                        f"task {t.name!r}: depends on {d.task!r} on key {d.by!r}, but task "
                        f"{side.name!r} declares no key {d.by!r} (keys: {sorted(side.keys)})",
                        task=t.name,
                    )
                if side.inputs is None:
                    raise InvalidInput(
                        f"task {side.name!r}: key {d.by!r} is read from inputs, and it has none"
                    )


def _cycle_message(cycle: list[str]) -> str:
    return " -> ".join(cycle) + " (each is needed by the next)"


def compile_workflow(spec: WorkflowSpec) -> CompiledWorkflow:
    """Validate a workflow and derive its order and its eager/lazy tasks.

    Raises:
        InvalidInput: duplicate names, unknown references, a cycle (printed), a loop that is
            not closed, mismatched job-level mappings, too many jobs.
    """
    _check_names(spec)
    names = {t.name for t in spec.tasks}
    loop_of = _check_loops(spec, names)
    prereqs = {t.name: frozenset(ref for ref, _ in _refs(t)) for t in spec.tasks}
    sorter = graphlib.TopologicalSorter(prereqs)
    try:
        order = tuple(sorter.static_order())
    except graphlib.CycleError as e:
        cycle = list(e.args[1])
        raise InvalidInput(
            f"workflow {spec.name}: dependency cycle: {_cycle_message(cycle)}", cycle=cycle
        ) from e
    _check_loops_closed(prereqs, loop_of)
    _check_job_dependencies(spec)
    total = 0
    for t in spec.tasks:
        check_command(t.command)
        if not t.graph:
            total += count_jobs(t)
    if total > MAX_WORKFLOW_JOBS:
        raise InvalidInput(f"workflow would have {total} jobs; the limit is {MAX_WORKFLOW_JOBS}")
    lazy: set[str] = set()
    for name in order:
        t = spec.task(name)
        if t.after or t.when is not None or name in loop_of or prereqs[name] & lazy:
            lazy.add(name)
    for name in lazy:
        if spec.task(name).graph:
            raise InvalidInput(
                f"graph task {name!r} cannot wait for a task to end (after, when, a loop, or "
                "downstream of one): its jobs are made with the workflow"
            )
    job_parents = {d.task for t in spec.tasks for d in t.depends}
    job_parents |= {t.name for t in spec.tasks if t.graph}  # graph parents: graph tasks only
    return CompiledWorkflow(spec, order, prereqs, frozenset(lazy), loop_of, frozenset(job_parents))
