"""Cut a task into jobs, in one of the split modes of `SplitMode` (one per task):

    files             inputs, `files_per_job` per job (default 1); the last job may have fewer
    count             `n_jobs` jobs without inputs
    events            `n_events` events without inputs (generation), numbered from `first_event`,
                      in jobs of `events_per_job`; the last job may have fewer
    events_per_input  each input holds `events_per_input` events, cut into jobs of
                      `events_per_job`; a job reads one file and never spans files; event
                      numbers run on across files from `first_event` (file i's events start at
                      first_event + i * events_per_input)
    size              inputs with `input_sizes_mb`, grouped greedily in order into jobs of at
                      most `size_per_job_mb`; an input larger than the limit is a job of its own
    jobs              an explicit list: each entry is one job's inputs

Placeholders in the command are filled per job:
    {input}   the job's inputs joined by commas
    {inputs}  as a whole word: one argv word per input
    {index}   the job's index in the task (0-based)
    {task}    the task's name
    {iteration}  the loop iteration (1 outside loops)
    {first_event}  the number of the job's first event      (event modes only)
    {n_events}     how many events the job processes         (event modes only)
    {skip_events}  events of the job's input file before its first one (0 without inputs)
Literal braces are written twice: `{{` and `}}`. With `stage_in`, inputs are URLs the pilot
fetches into the job's workdir, and `{input}`/`{inputs}` are the files' local names.

Splitting streams: `split` yields one job at a time and `count_jobs` computes the count
without making jobs, so memory stays bounded by the task spec plus one job.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import EVENT_MODES, JobSpec, SplitMode, TaskSpec, staged_name

EVENT_PLACEHOLDERS = frozenset({"first_event", "n_events", "skip_events"})
PLACEHOLDERS = frozenset({"input", "inputs", "index", "task", "iteration"}) | EVENT_PLACEHOLDERS


@dataclass(frozen=True)
class EventRange:
    """The events of one job: `count` events numbered from `first`, after skipping `skip`
    events of its input file."""

    first: int
    count: int
    skip: int = 0


@dataclass(frozen=True)
class Cut:
    """One job before its command is rendered."""

    inputs: Sequence[str]
    events: EventRange | None = None


def check_command(command: Sequence[str]) -> frozenset[str]:
    """Reject unknown or malformed placeholders before anything is stored.

    Returns:
        The placeholders the command uses.

    Raises:
        InvalidInput: names the word and the placeholder.
    """
    used: set[str] = set()
    for pos, word in enumerate(command):
        try:
            parts = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(word)]
        except ValueError as e:
            raise InvalidInput(f"command[{pos}] {word!r}: {e}", field=f"command.{pos}") from e
        for field, spec, conv in parts:
            if field is None:
                continue
            if field not in PLACEHOLDERS:
                raise InvalidInput(
                    f"command[{pos}] {word!r}: unknown placeholder {{{field}}}; "
                    f"known: {', '.join('{' + p + '}' for p in sorted(PLACEHOLDERS))}",
                    field=f"command.{pos}",
                )
            if field == "inputs" and word != "{inputs}":
                raise InvalidInput(
                    f"command[{pos}] {word!r}: {{inputs}} must stand alone as a word",
                    field=f"command.{pos}",
                )
            if spec or conv:
                raise InvalidInput(
                    f"command[{pos}] {word!r}: placeholders take no format spec or conversion "
                    f"(write {{{field}}})",
                    field=f"command.{pos}",
                )
            used.add(field)
    return frozenset(used)


def check_split(spec: TaskSpec) -> None:
    """Check a task's command against its split mode (event placeholders need an event mode),
    and with stage_in its inputs (`check_staged`); at submit, before anything is stored.

    Raises:
        InvalidInput: a bad placeholder, an event placeholder in a task not split by events,
            or inputs that cannot be staged in.
    """
    if spec.stage_in:
        try:
            check_staged(spec)
        except ValueError as e:
            raise InvalidInput(f"task {spec.name}: {e}", field="inputs") from e
    events = check_command(spec.command) & EVENT_PLACEHOLDERS
    if events and spec.split_mode not in EVENT_MODES:
        names = ", ".join("{" + p + "}" for p in sorted(events))
        raise InvalidInput(
            f"task {spec.name}: command uses {names}, but only a task split by events "
            "(n_events or events_per_input) has event numbers",
            field="command",
        )


def check_staged(spec: TaskSpec) -> None:
    """With stage_in: every input is a URL a pilot can fetch, no two inputs of one job land
    under the same local name, and the command has no event placeholders (the job's command
    is rendered again with local names, without event numbers).

    Raises:
        ValueError: naming the input or the placeholder.
    """
    if spec.split_mode in EVENT_MODES and _uses_events(spec.command):
        raise ValueError("stage_in cannot be combined with event placeholders in the command yet")
    if spec.inputs is None and spec.jobs is None:
        return  # no files to stage (and n_jobs may be millions of empty groups)
    for group in job_inputs(spec):
        seen: dict[str, str] = {}
        for url in group:
            name = staged_name(url)
            if name in seen:
                raise ValueError(
                    f"inputs {seen[name]!r} and {url!r} of one job would both be staged in "
                    f"as {name!r}"
                )
            seen[name] = url


def _uses_events(command: Sequence[str]) -> bool:
    try:
        return bool(check_command(command) & EVENT_PLACEHOLDERS)
    except InvalidInput:
        return False  # reported by check_split when the task is submitted or split


def render(
    command: Sequence[str],
    *,
    task: str,
    index: int,
    inputs: Sequence[str],
    iteration: int = 1,
    events: EventRange | None = None,
) -> list[str]:
    """The argv of one job: placeholders filled, `{inputs}` expanded into words."""
    argv: list[str] = []
    values: dict[str, object] = {
        "input": ",".join(inputs),
        "index": index,
        "task": task,
        "iteration": iteration,
    }
    if events is not None:
        values |= {
            "first_event": events.first,
            "n_events": events.count,
            "skip_events": events.skip,
        }
    for word in command:
        if word == "{inputs}":
            argv.extend(inputs)
        else:
            argv.append(word.format_map(values))
    return argv


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _size_bounds(sizes: Sequence[float], limit: float) -> Iterator[tuple[int, int]]:
    """Greedy groups of consecutive inputs, as (start, end) slices, each at most `limit` MB
    in total, except a single input larger than the limit, which is a group of its own."""
    start, total = 0, 0.0
    for i, size in enumerate(sizes):
        if i > start and total + size > limit:
            yield start, i
            start, total = i, 0.0
        total += size
    if sizes:
        yield start, len(sizes)


def count_jobs(spec: TaskSpec) -> int:
    """How many jobs `split(spec)` yields, without making them (size mode walks the sizes)."""
    mode = spec.split_mode
    if mode is SplitMode.COUNT:
        assert spec.n_jobs is not None  # guaranteed by TaskSpec's validator
        return spec.n_jobs
    if mode is SplitMode.EVENTS:
        assert spec.n_events is not None and spec.events_per_job is not None
        return _ceil_div(spec.n_events, spec.events_per_job)
    if mode is SplitMode.EVENTS_PER_INPUT:
        assert spec.inputs and spec.events_per_input and spec.events_per_job
        return len(spec.inputs) * _ceil_div(spec.events_per_input, spec.events_per_job)
    if mode is SplitMode.SIZE:
        assert spec.input_sizes_mb is not None and spec.size_per_job_mb is not None
        return sum(1 for _ in _size_bounds(spec.input_sizes_mb, spec.size_per_job_mb))
    if mode is SplitMode.JOBS:
        assert spec.jobs is not None
        return len(spec.jobs)
    return _ceil_div(len(spec.inputs or ()), spec.files_per_job)


def _file_cuts(spec: TaskSpec) -> Iterator[Cut]:
    inputs, step = spec.inputs or [], spec.files_per_job
    for start in range(0, len(inputs), step):
        yield Cut(inputs=inputs[start : start + step])


def _count_cuts(spec: TaskSpec) -> Iterator[Cut]:
    for _ in range(count_jobs(spec)):
        yield Cut(inputs=())


def _event_cuts(spec: TaskSpec) -> Iterator[Cut]:
    assert spec.n_events is not None and spec.events_per_job is not None
    for done in range(0, spec.n_events, spec.events_per_job):
        count = min(spec.events_per_job, spec.n_events - done)
        yield Cut(inputs=(), events=EventRange(spec.first_event + done, count))


def _events_per_input_cuts(spec: TaskSpec) -> Iterator[Cut]:
    assert spec.events_per_input is not None and spec.events_per_job is not None
    per_file, per_job = spec.events_per_input, spec.events_per_job
    for i, name in enumerate(spec.inputs or []):
        base = spec.first_event + i * per_file
        for skip in range(0, per_file, per_job):
            count = min(per_job, per_file - skip)
            yield Cut(inputs=(name,), events=EventRange(base + skip, count, skip))


def _size_cuts(spec: TaskSpec) -> Iterator[Cut]:
    assert spec.input_sizes_mb is not None and spec.size_per_job_mb is not None
    inputs = spec.inputs or []
    for start, end in _size_bounds(spec.input_sizes_mb, spec.size_per_job_mb):
        yield Cut(inputs=inputs[start:end])


def _listed_cuts(spec: TaskSpec) -> Iterator[Cut]:
    for group in spec.jobs or []:
        yield Cut(inputs=group)


_CUTS: dict[SplitMode, Callable[[TaskSpec], Iterator[Cut]]] = {
    SplitMode.FILES: _file_cuts,
    SplitMode.COUNT: _count_cuts,
    SplitMode.EVENTS: _event_cuts,
    SplitMode.EVENTS_PER_INPUT: _events_per_input_cuts,
    SplitMode.SIZE: _size_cuts,
    SplitMode.JOBS: _listed_cuts,
}


def cuts(spec: TaskSpec) -> Iterator[Cut]:
    """The jobs of a task before rendering, in index order, lazily (at most one in memory)."""
    return _CUTS[spec.split_mode](spec)


def job_inputs(spec: TaskSpec) -> Iterator[list[str]]:
    """The inputs of each job of a task, in index order (empty lists for jobs without)."""
    for cut in cuts(spec):
        yield list(cut.inputs)


def split(
    spec: TaskSpec, *, iteration: int = 1, parents: Iterable[Sequence[str]] | None = None
) -> Iterator[JobSpec]:
    """Yield the jobs of a task, in index order, lazily (a task may have millions of jobs).
    `parents`: each job's parents' ids, in index order (a workflow task's job dependencies).

    Raises:
        InvalidInput: the command has a bad placeholder, or event placeholders in a task not
            split by events.
    """
    check_split(spec)
    plists = iter(parents) if parents is not None else None
    # A command without braces renders as itself (a copy per job: jobs do not share it)
    plain = not any("{" in word or "}" in word for word in spec.command)
    for index, cut in enumerate(cuts(spec)):
        argv = list(spec.command) if plain else render(
            spec.command,
            task=spec.name,
            index=index,
            inputs=cut.inputs,
            iteration=iteration,
            events=cut.events,
        )  # fmt: skip
        ids = list(next(plists)) if plists is not None else []
        yield JobSpec(index=index, command=argv, inputs=list(cut.inputs), parents=ids)
