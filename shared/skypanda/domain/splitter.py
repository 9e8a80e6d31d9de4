"""Cut a task into jobs: one job per input, `files_per_job` inputs per job, or `n_jobs` jobs.

Placeholders in the command are filled per job:
    {input}   the job's inputs joined by commas
    {inputs}  as a whole word: one argv word per input
    {index}   the job's index in the task (0-based)
    {task}    the task's name
    {iteration}  the loop iteration (1 outside loops)
Literal braces are written twice: `{{` and `}}`. With `stage_in`, inputs are URLs the pilot
fetches into the job's workdir, and `{input}`/`{inputs}` are the files' local names.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Sequence

from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import JobSpec, TaskSpec

PLACEHOLDERS = frozenset({"input", "inputs", "index", "task", "iteration"})


def check_command(command: Sequence[str]) -> None:
    """Reject unknown or malformed placeholders before anything is stored.

    Raises:
        InvalidInput: names the word and the placeholder.
    """
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


def render(
    command: Sequence[str], *, task: str, index: int, inputs: Sequence[str], iteration: int = 1
) -> list[str]:
    """The argv of one job: placeholders filled, `{inputs}` expanded into words."""
    argv: list[str] = []
    values = {"input": ",".join(inputs), "index": index, "task": task, "iteration": iteration}
    for word in command:
        if word == "{inputs}":
            argv.extend(inputs)
        else:
            argv.append(word.format_map(values))
    return argv


def count_jobs(spec: TaskSpec) -> int:
    """How many jobs `split(spec)` yields, without making them."""
    if spec.inputs is None:
        assert spec.n_jobs is not None  # guaranteed by TaskSpec's validator
        return spec.n_jobs
    return -(-len(spec.inputs) // spec.files_per_job)


def split(spec: TaskSpec, *, iteration: int = 1) -> Iterator[JobSpec]:
    """Yield the jobs of a task, in index order, lazily (a task may have millions of jobs).

    Raises:
        InvalidInput: the command has a bad placeholder.
    """
    check_command(spec.command)
    if spec.inputs is None:
        for index in range(count_jobs(spec)):
            argv = render(spec.command, task=spec.name, index=index, inputs=[], iteration=iteration)
            yield JobSpec(index=index, command=argv)
        return
    step = spec.files_per_job
    for index, start in enumerate(range(0, len(spec.inputs), step)):
        group = spec.inputs[start : start + step]
        argv = render(spec.command, task=spec.name, index=index, inputs=group, iteration=iteration)
        yield JobSpec(index=index, command=argv, inputs=list(group))
