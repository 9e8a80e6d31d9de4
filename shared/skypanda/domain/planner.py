"""What a workflow does next, given the states of its tasks (iDDS's "get new works").

Pure: `plan` looks at the latest iteration of every task and says which waiting tasks to make
now, which to end without running (skipped: a condition did not hold; cancelled: a task they
need failed), which loops go round again, and whether the workflow has ended. The handler
applies the steps and calls `plan` again until nothing is left to do; every step is a
compare-and-set, so two handlers planning the same workflow at once cannot both apply one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from skypanda.domain.states import TASK_FINAL, TASK_OK, TaskStatus, WorkflowStatus
from skypanda.domain.workflow import CompiledWorkflow, Condition

BAD: frozenset[TaskStatus] = frozenset(
    {TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.ABORTED}
)
FALSY = frozenset({"", "0", "false", "no", "off"})


@dataclass(frozen=True)
class TaskFacts:
    """What the planner knows of one task record (one iteration of a workflow task)."""

    name: str
    iteration: int
    status: TaskStatus
    flags: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Split:
    name: str
    iteration: int


@dataclass(frozen=True)
class EndTask:
    name: str
    iteration: int
    status: TaskStatus  # SKIPPED or CANCELLED
    reason: str


@dataclass(frozen=True)
class Repeat:
    loop: str
    iteration: int  # the new iteration
    tasks: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    splits: tuple[Split, ...] = ()
    ends: tuple[EndTask, ...] = ()
    repeats: tuple[Repeat, ...] = ()
    final: WorkflowStatus | None = None
    reason: str = ""

    @property
    def empty(self) -> bool:
        return not (self.splits or self.ends or self.repeats) and self.final is None


def condition_holds(cond: Condition, facts: TaskFacts) -> bool:
    """Whether a condition holds on an ended task."""
    if cond.status == "succeeded":
        return facts.status in TASK_OK
    if cond.status == "failed":
        return facts.status in BAD
    if cond.status == "ended":
        return True
    values = facts.flags.get(cond.flag or "", frozenset())
    if cond.equals is not None:
        return cond.equals in values
    return any(v.strip().lower() not in FALSY for v in values)


def describe(cond: Condition) -> str:
    if cond.status is not None:
        return f"{cond.task} {cond.status}"
    return f"{cond.task} flag {cond.flag}" + (f"={cond.equals}" if cond.equals is not None else "")


R = TypeVar("R")


def latest_iterations(
    records: Iterable[R], name: Callable[[R], str], iteration: Callable[[R], int]
) -> dict[str, R]:
    """Each task's record of its latest iteration (loops make several records of a task)."""
    latest: dict[str, R] = {}
    for r in records:
        n = name(r)
        if n not in latest or iteration(r) > iteration(latest[n]):
            latest[n] = r
    return latest


def _latest(records: Iterable[TaskFacts]) -> dict[str, TaskFacts]:
    return latest_iterations(records, lambda r: r.name, lambda r: r.iteration)


def _loops(
    cw: CompiledWorkflow, latest: Mapping[str, TaskFacts]
) -> tuple[dict[str, str], list[Repeat]]:
    """Loops that are over (name -> why), and loops to go round again."""
    done: dict[str, str] = {}
    repeats: list[Repeat] = []
    for lp in cw.spec.loops:
        body = [latest[n] for n in lp.tasks]
        if any(r.status not in TASK_FINAL for r in body):
            continue
        k = max(r.iteration for r in body)
        bad = [r.name for r in body if r.status in BAD]
        if bad and not all(cw.continues(n) for n in bad):
            done[lp.name] = f"iteration {k}: {', '.join(bad)} failed"
        elif condition_holds(lp.until, latest[lp.until.task]):
            done[lp.name] = f"{describe(lp.until)} at iteration {k}"
        elif k >= lp.max_iterations:
            done[lp.name] = f"stopped after {k} iterations ({describe(lp.until)} never held)"
        else:
            repeats.append(Repeat(lp.name, k + 1, tuple(lp.tasks)))
    return done, repeats


def _decide(
    cw: CompiledWorkflow, name: str, pre: list[TaskFacts], latest: Mapping[str, TaskFacts]
) -> Split | EndTask:
    task = cw.spec.task(name)
    it = latest[name].iteration
    when = task.when
    if when is not None and not condition_holds(when, latest[when.task]):
        return EndTask(name, it, TaskStatus.SKIPPED, f"condition not met: {describe(when)}")
    reacts = when is not None and when.status in ("failed", "ended")
    skipped = [p.name for p in pre if p.status is TaskStatus.SKIPPED]
    if skipped and not (reacts and skipped == [when.task if when else ""]):
        return EndTask(name, it, TaskStatus.SKIPPED, f"needs skipped task {', '.join(skipped)}")
    bad = [p.name for p in pre if p.status in BAD and not (reacts and when and p.name == when.task)]
    if bad and not cw.continues(name):
        return EndTask(
            name, it, TaskStatus.CANCELLED, f"missing parent: task {', '.join(bad)} failed"
        )
    return Split(name, it)


def plan(cw: CompiledWorkflow, records: Iterable[TaskFacts]) -> Plan:
    """The next steps of a workflow whose task records are `records`."""
    latest = _latest(records)
    loops_done, repeats = _loops(cw, latest)
    splits: list[Split] = []
    ends: list[EndTask] = []
    for name in cw.order:
        rec = latest[name]
        if rec.status is not TaskStatus.REGISTERED or name not in cw.lazy:
            continue
        pre: list[TaskFacts] = []
        ready = True
        for p in sorted(cw.prerequisites[name]):
            outer = cw.loop_of.get(p)
            if outer is not None and outer != cw.loop_of.get(name) and outer not in loops_done:
                ready = False  # a task outside a loop waits for the whole loop
            facts = latest[p]
            ready = ready and facts.status in TASK_FINAL
            pre.append(facts)
        if not ready:
            continue
        step = _decide(cw, name, pre, latest)
        (splits if isinstance(step, Split) else ends).append(step)  # type: ignore[arg-type]
    if splits or ends or repeats:
        return Plan(tuple(splits), tuple(ends), tuple(repeats))
    if any(r.status not in TASK_FINAL for r in latest.values()):
        return Plan()
    bad = sorted(r.name for r in latest.values() if r.status in BAD)
    notes = [f"loop {k}: {v}" for k, v in sorted(loops_done.items())]
    if bad:
        return Plan(
            final=WorkflowStatus.FAILED, reason="; ".join([f"failed: {', '.join(bad)}", *notes])
        )
    return Plan(final=WorkflowStatus.DONE, reason="; ".join(notes))
