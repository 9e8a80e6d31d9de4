"""What a task costs to store once split, bounded before anything is stored.

A small request can ask for a lot: a long command or environment is copied into every job, and
`{input}`/`{inputs}` copy the inputs into each job's command. `stored_bytes` bounds from above
what the jobs of a task will take (each job's rendered command, inputs, environment and record),
without splitting it, from the spec alone; `check_task_budget` and `check_workflow_budget`
refuse a task or workflow over its budget with a message naming the fields that cost most.
"""

from __future__ import annotations

import json
import string

from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import TaskSpec
from skypanda.domain.splitter import EVENT_PLACEHOLDERS, count_jobs, cuts

JOB_RECORD_BYTES = 1000
"""A job's record without its command, inputs and environment (ids, states, times, indexes,
its outbox and edge rows), rounded up."""
OVERHEAD = 1.15
"""Pages, indexes and quoting on top of the values (measured on SQLite: 1.03-1.06)."""
NUMBER_BYTES = 20
"""The most a number placeholder ({index}, {first_event} ...) adds to a command."""
MAX_JOB_BYTES = 64 * 1024
"""One job's command once rendered, its inputs and its environment."""
MAX_TASK_BYTES = 2 * 1024 * 1024 * 1024
"""A task's jobs, stored: a million jobs (the most a task may have) of up to about 2 KB."""
MAX_WORKFLOW_BYTES = 4 * 1024 * 1024 * 1024
"""A workflow's jobs, stored, across its tasks (its graph jobs: their lines' size)."""
MAX_COMMAND_BYTES = 64 * 1024
"""A task's command before placeholders are filled (copied into every job)."""
MAX_ENV_BYTES = 64 * 1024
"""A task's environment (copied into every job)."""


def _placeholders(command: list[str]) -> dict[str, int]:
    """How often each placeholder is used in the command."""
    uses: dict[str, int] = {}
    for word in command:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(word) if f is not None]
        except ValueError:
            continue  # a malformed word is refused by check_command
        for f in fields:
            uses[f] = uses.get(f, 0) + 1
    return uses


def _inputs_chars(spec: TaskSpec) -> int:
    if spec.jobs is not None:
        return sum(len(i) + 3 for group in spec.jobs for i in group)
    return sum(len(i) + 3 for i in spec.inputs or ())


def stored_bytes(spec: TaskSpec, n_jobs: int | None = None) -> int:
    """An upper bound of the bytes the task's jobs will take in a store.

    Each job stores its command rendered, its inputs and the task's environment. A placeholder
    that lists inputs ({input}, {inputs}) copies each input into its job's command once per use,
    so over the whole task the inputs are stored (1 + uses) times; numbers add at most
    NUMBER_BYTES per use per job. (`events_per_input` repeats each input in each of its jobs.)
    """
    n = count_jobs(spec) if n_jobs is None else n_jobs
    uses = _placeholders(spec.command)
    command = sum(len(w) + 3 for w in spec.command)
    env = len(json.dumps(spec.env))
    numbers = sum(c for p, c in uses.items() if p in EVENT_PLACEHOLDERS | {"index", "iteration"})
    task_names = uses.get("task", 0) * len(spec.name)
    per_job = JOB_RECORD_BYTES + command + env + numbers * NUMBER_BYTES + task_names
    copies = 1 + uses.get("input", 0) + uses.get("inputs", 0)
    inputs = _inputs_chars(spec)
    if spec.events_per_input and spec.events_per_job:
        inputs *= -(-spec.events_per_input // spec.events_per_job)
    return int(OVERHEAD * (n * per_job + inputs * copies))


def job_bytes(spec: TaskSpec) -> int:
    """An upper bound of one job's command once rendered, its inputs and environment."""
    uses = _placeholders(spec.command)
    copies = 1 + uses.get("input", 0) + uses.get("inputs", 0)
    group = 0
    if spec.inputs or spec.jobs:  # without inputs, jobs have none (and there may be millions)
        group = max((sum(len(i) + 3 for i in cut.inputs) for cut in cuts(spec)), default=0)
    numbers = sum(c for p, c in uses.items() if p in EVENT_PLACEHOLDERS | {"index", "iteration"})
    command = sum(len(w) + 3 for w in spec.command) + numbers * NUMBER_BYTES
    return (
        command + uses.get("task", 0) * len(spec.name) + len(json.dumps(spec.env)) + group * copies
    )


def check_fields(spec: TaskSpec) -> None:
    """The fields copied into every job, each within its own bound.

    Raises:
        InvalidInput: naming the field, its size and the limit.
    """
    command = sum(len(w) for w in spec.command)
    if command > MAX_COMMAND_BYTES:
        raise InvalidInput(
            f"task {spec.name}: command is {command:,} characters; the limit is "
            f"{MAX_COMMAND_BYTES:,} (it is copied into every job)",
            field="command",
        )
    env = len(json.dumps(spec.env))
    if env > MAX_ENV_BYTES:
        raise InvalidInput(
            f"task {spec.name}: env is {env:,} bytes; the limit is {MAX_ENV_BYTES:,} "
            "(it is copied into every job)",
            field="env",
        )
    job = job_bytes(spec)
    if job > MAX_JOB_BYTES:
        raise InvalidInput(
            f"task {spec.name}: one job's command, inputs and env could take {job:,} bytes once "
            f"its placeholders are filled; the limit is {MAX_JOB_BYTES:,} per job",
            field="command",
        )


def check_task_budget(spec: TaskSpec, n_jobs: int | None = None) -> int:
    """The task's stored size (`stored_bytes`), within MAX_TASK_BYTES.

    Raises:
        InvalidInput: a field over its bound, or the whole over the task's budget, naming what
            costs most.
    """
    check_fields(spec)
    size = stored_bytes(spec, n_jobs)
    if size > MAX_TASK_BYTES:
        raise InvalidInput(
            f"task {spec.name}: its jobs would take about {_mb(size)} to store; the limit is "
            f"{_mb(MAX_TASK_BYTES)} ({_why(spec, n_jobs)})",
            field="n_jobs",
        )
    return size


def check_workflow_budget(name: str, sizes: list[int]) -> None:
    """Raises: InvalidInput: the workflow's tasks together over MAX_WORKFLOW_BYTES."""
    total = sum(sizes)
    if total > MAX_WORKFLOW_BYTES:
        raise InvalidInput(
            f"workflow {name}: its jobs would take about {_mb(total)} to store; the limit is "
            f"{_mb(MAX_WORKFLOW_BYTES)}"
        )


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):,.0f} MB"


def _why(spec: TaskSpec, n_jobs: int | None) -> str:
    n = count_jobs(spec) if n_jobs is None else n_jobs
    command = sum(len(w) + 3 for w in spec.command)
    env = len(json.dumps(spec.env))
    uses = _placeholders(spec.command)
    copies = uses.get("input", 0) + uses.get("inputs", 0)
    parts = [f"{n:,} jobs, each with a {command:,}-byte command and {env:,} bytes of env"]
    if copies:
        parts.append(f"its inputs copied into commands {copies} time(s)")
    return "; ".join(parts)
