"""Job-level dependencies: who a job waits for, and what a job does once its parents ended.

Pure functions. Parents are found by index (job i of B after job i of A), by key (a job of B
after every job of A sharing a value of a key read from inputs with a regex), or from an
explicit job graph (JSON lines, one job per line, parents listed before their children).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import re2  # type: ignore[import-untyped]
from pydantic import Field, ValidationError

from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import JobSpec, TaskSpec
from skypanda.domain.patterns import Pattern, compile_user_pattern, subject
from skypanda.domain.splitter import count_jobs, job_inputs, render, split
from skypanda.domain.states import JOB_FINAL, JobStatus
from skypanda.domain.values import Strict
from skypanda.domain.workflow import INDEX, MAX_PARENTS_PER_JOB, WorkflowTask

ParentRef = tuple[str, int]  # (task name, job index)


def key_values(pattern: Pattern, inputs: Iterable[str]) -> set[str]:
    """Every value of a key in a job's inputs: each match of the regex (its group, if any), in
    the first 16 KiB of each input (RE2, linear time: see `patterns`)."""
    out: set[str] = set()
    raw = _raw_search(pattern)
    for text in inputs:
        text = subject(text)
        if raw is not None and text.isascii():
            _ascii_values(raw, 1 if pattern.groups else 0, text, out)
        else:
            _values(pattern, text, out)
    return out


def _values(pattern: Pattern, text: str, out: set[str]) -> None:
    """`key_values` of one text, through the binding's `findall` (any text)."""
    groups = pattern.groups
    # `findall` (a third of `finditer`'s cost: no match objects) says '' both for an empty
    # value and for an optional group that did not take part: only then tell them apart.
    found = pattern.findall(text)
    if groups > 1:
        found = [f[0] for f in found]
    if groups and "" in found:
        found = [m.group(1) for m in pattern.finditer(text)]
    out.update(v for v in found if v is not None)


RawSearch = Callable[[Any, bytes, int, int], Sequence[tuple[int, int]]]
_UNANCHORED = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
_NO_SPAN = (-1, -1)


def _raw_search(pattern: Pattern) -> RawSearch | None:
    """The compiled RE2 search under the binding's `finditer` (its spans, by bytes), where the
    binding has it (google-re2 1.1); None: use `findall`. A key reads a million inputs at a
    workflow's submission, and `finditer` over a `str` costs about 7 us of Python per input
    (character offsets, match objects), the search itself under 1 us. tests/unit/test_dag.py
    checks both give the same values."""
    search = getattr(getattr(pattern, "_regexp", None), "Match", None)
    return cast(RawSearch, search) if search is not None and _UNANCHORED is not None else None


def _ascii_values(search: RawSearch, group: int, text: str, out: set[str]) -> None:
    """The values of `group` (0: the whole match) of every match in an ASCII `text` (byte
    offsets are character offsets), found as the binding's `finditer` finds them: each search
    starts where the last match ended, one further after an empty match there."""
    data = text.encode("ascii")
    pos, end = 0, len(data)
    while True:
        spans = search(_UNANCHORED, data, pos, end)
        whole = spans[0]
        if whole == _NO_SPAN:
            return
        start, stop = spans[group]
        if start >= 0:  # (an optional group that took no part has no value)
            out.add(text[start:stop])
        if pos == end:
            return
        pos = pos + 1 if pos == whole[1] else whole[1]


def input_groups(spec: TaskSpec) -> Iterator[list[str]]:
    """The inputs of each job of a task, in index order (as the splitter groups them, in any
    split mode); none for a task without inputs (n_jobs, n_events)."""
    if spec.inputs is None and spec.jobs is None:
        return iter(())
    return job_inputs(spec)


def key_index(task: WorkflowTask, key: str) -> dict[str, list[int]]:
    """Key value -> indices of the task's jobs that carry it."""
    pattern = _key_pattern(task, key)
    index: dict[str, list[int]] = defaultdict(list)
    for i, group in enumerate(input_groups(task)):
        for value in key_values(pattern, group):
            index[value].append(i)
    return index


def _key_pattern(task: WorkflowTask, key: str) -> Pattern:
    return compile_user_pattern(task.keys[key], f"regular expression of key {key!r}")


KeyIndexes = dict[tuple[str, str], dict[str, list[int]]]
"""(task name, key) -> that task's `key_index`: computed once per workflow, shared by the
check at submission and the split (a million inputs cost seconds to index)."""


def parents_by_job(
    child: WorkflowTask, parents: Mapping[str, WorkflowTask], known: KeyIndexes | None = None
) -> Iterator[list[ParentRef]]:
    """For each job of `child` in index order, the parent jobs it waits for. `known`: the key
    indexes computed already (those computed here are added to it).

    Raises:
        InvalidInput: a mapping that leaves a job without its parents (a key value no parent
            carries, a job without the key), or too many parents for one job.
    """
    known = {} if known is None else known
    indices = {}
    for d in child.depends:
        if d.by != INDEX:
            if (d.task, d.by) not in known:
                known[d.task, d.by] = key_index(parents[d.task], d.by)
            indices[d.by] = known[d.task, d.by]
    patterns = {d.by: _key_pattern(child, d.by) for d in child.depends if d.by != INDEX}
    groups = input_groups(child)
    for i in range(count_jobs(child)):
        group = next(groups, [])
        refs: list[ParentRef] = []
        for d in child.depends:
            if d.by == INDEX:
                refs.append((d.task, i))
                continue
            values = key_values(patterns[d.by], group)
            if not values:
                raise InvalidInput(
                    f"task {child.name!r} job {i} (inputs {group}): no value of key {d.by!r} "
                    f"in its inputs, so it cannot be matched to jobs of {d.task!r}",
                    task=child.name,
                )
            found: set[int] = set()
            for v in sorted(values):
                matches = indices[d.by].get(v)
                if not matches:
                    raise InvalidInput(
                        f"task {child.name!r} job {i}: {d.by}={v!r} matches no job of {d.task!r}",
                        task=child.name,
                    )
                found.update(matches)
            refs.extend((d.task, p) for p in sorted(found))
        if len(refs) > MAX_PARENTS_PER_JOB:
            raise InvalidInput(
                f"task {child.name!r} job {i} would wait for {len(refs)} jobs; "
                f"the limit is {MAX_PARENTS_PER_JOB} (use after: for a task-level dependency)"
            )
        yield refs


class GraphNode(Strict):
    """One line of a job graph file."""

    id: str = Field(min_length=1, max_length=200)
    task: str
    inputs: list[str] = Field(default_factory=list)
    parents: list[str] = Field(default_factory=list, max_length=MAX_PARENTS_PER_JOB)


@dataclass(frozen=True)
class GraphJob:
    task: str
    index: int
    inputs: list[str]
    parents: list[ParentRef]


def read_graph(
    lines: Iterable[str | bytes], tasks: Mapping[str, WorkflowTask]
) -> Iterator[GraphJob]:
    """Stream a job graph file: one JSON object per line, parents before children.

    Memory grows with the number of job ids (a map id -> (task, index)), not with the file.

    Raises:
        InvalidInput: bad JSON or fields (with the line number), unknown task, duplicate id,
            a parent not listed before its child (unknown, or a cycle).
    """
    where: dict[str, ParentRef] = {}
    counts: dict[str, int] = defaultdict(int)
    for lineno, raw in enumerate(lines, start=1):
        try:
            text = raw.decode() if isinstance(raw, bytes) else raw
            if not text.strip():
                continue
            node = GraphNode.model_validate(json.loads(text))
        except (UnicodeDecodeError, json.JSONDecodeError, ValidationError) as e:
            raise InvalidInput(f"graph line {lineno}: {e}", line=lineno) from e
        task = tasks.get(node.task)
        if task is None or not task.graph:
            raise InvalidInput(
                f"graph line {lineno}: job {node.id!r} names task {node.task!r}, which is not a "
                "graph task of the workflow",
                line=lineno,
            )
        if node.id in where:
            raise InvalidInput(f"graph line {lineno}: duplicate job id {node.id!r}", line=lineno)
        refs: list[ParentRef] = []
        for p in node.parents:
            ref = where.get(p)
            if ref is None:
                raise InvalidInput(
                    f"graph line {lineno}: job {node.id!r} names parent {p!r}, which is not "
                    "listed before it (unknown job, or a cycle: list parents before children)",
                    line=lineno,
                    job=node.id,
                    parent=p,
                )
            refs.append(ref)
        index = counts[node.task]
        counts[node.task] += 1
        where[node.id] = (node.task, index)
        yield GraphJob(node.task, index, node.inputs, refs)


def graph_job_spec(task: TaskSpec, job: GraphJob, parent_ids: list[str]) -> JobSpec:
    argv = render(task.command, task=task.name, index=job.index, inputs=job.inputs)
    return JobSpec(index=job.index, command=argv, inputs=job.inputs, parents=parent_ids)


def task_job_specs(
    task: WorkflowTask, parents: Iterable[Sequence[str]] | None, iteration: int = 1
) -> Iterator[JobSpec]:
    """The jobs of a (non-graph) workflow task, each with its parents' ids."""
    return split(task, iteration=iteration, parents=parents)


# -- release ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParentsState:
    """What a child needs to know about its parents: any not ended? which ended badly (a few)?"""

    pending: bool
    failed_parents: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return bool(self.failed_parents)


def summarize(statuses: Mapping[str, JobStatus | None], keep: int = 3) -> ParentsState:
    """Summarise parents' states (None: the parent is not final yet, or unknown)."""
    pending = False
    failed: list[str] = []
    for parent, s in statuses.items():
        if s is None or s not in JOB_FINAL:
            pending = True
        elif s is not JobStatus.FINISHED and len(failed) < keep:
            failed.append(parent)
    return ParentsState(pending, tuple(failed))


def missing_parent(state: ParentsState) -> str:
    """The diagnosis of a job cancelled because parents failed."""
    return f"missing parent: {', '.join(state.failed_parents)} did not finish"


def child_status(parents: ParentsState, *, continue_on_failure: bool) -> JobStatus | None:
    """What a waiting (defined) job becomes given its parents: None = keep waiting.

    Activated once every parent ended: finished, or in any way when the workflow continues
    past failures. Otherwise cancelled (missing parent); descendants follow the same rule.
    """
    if parents.pending:
        return None
    if parents.failed and not continue_on_failure:
        return JobStatus.CANCELLED
    return JobStatus.ACTIVATED
